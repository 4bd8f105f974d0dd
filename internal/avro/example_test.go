package avro_test

import (
	"errors"
	"fmt"

	"github.com/pgjet/pgjet/internal/avro"
)

func ExampleSchema_EncodeJSON() {
	s, err := avro.Parse(`{"type":"record","name":"shop.ItemAdded","fields":[
		{"name":"sku","type":"string"},
		{"name":"quantity","type":"int"},
		{"name":"gift","type":["null","string"],"default":null}]}`)
	if err != nil {
		panic(err)
	}

	_, err = s.EncodeJSON([]byte(`{"quantity":1.5,"colour":"red"}`))
	var verr *avro.ValidationError
	if errors.As(err, &verr) {
		for _, f := range verr.Fields {
			fmt.Println(f.Path, f.Rule)
		}
	}

	payload, err := s.EncodeJSON([]byte(`{"sku":"BOOK-1","quantity":2}`))
	if err != nil {
		panic(err)
	}
	msg := avro.AppendWire(nil, 42, payload)
	id, body, _ := avro.SplitWire(msg)
	out, _ := s.DecodeJSON(body)
	fmt.Println(id, string(out))
	// Output:
	// sku required
	// quantity type
	// colour unknown_field
	// 42 {"sku":"BOOK-1","quantity":2,"gift":null}
}

func ExampleResolveDecode() {
	v1, _ := avro.Parse(`{"type":"record","name":"shop.Customer","fields":[
		{"name":"id","type":"string"},{"name":"visits","type":"int"}]}`)
	v2, _ := avro.Parse(`{"type":"record","name":"shop.Customer","fields":[
		{"name":"id","type":"string"},{"name":"visits","type":"long"},
		{"name":"country","type":"string","default":"NL"}]}`)

	old, _ := v1.EncodeJSON([]byte(`{"id":"c-1","visits":3}`))
	v, err := avro.ResolveDecode(v1, v2, old)
	if err != nil {
		panic(err)
	}
	out, _ := v2.RenderJSON(v)
	fmt.Println(string(out))
	// Output: {"id":"c-1","visits":3,"country":"NL"}
}
