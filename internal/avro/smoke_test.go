package avro

import (
	"fmt"
	"os"
	"testing"
)

func TestSmoke(t *testing.T) {
	for _, f := range []string{"testdata/order.avsc", "testdata/all.avsc"} {
		txt, _ := os.ReadFile(f)
		s, err := Parse(string(txt))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(s.Canonical())
	}
	txt, _ := os.ReadFile("testdata/all.avsc")
	s, _ := Parse(string(txt))
	in := `{"b":true,"i":5,"l":1e3,"f":1.5,"d":"NaN","s":"hé","by":"AAE=","fx":"AQIDBA==","e":"RED","arr":[1,2],"m":{"a":1,"b":2},"u":"x","u3":{"test.Point":{"x":1}},
"uuid":"123e4567-e89b-12d3-a456-426614174000","ts":"2024-01-02T03:04:05.123456Z","tsu":1700000000000001,"date":"2024-02-29","tm":"13:14:15.5","tu":5,"dec":"-12.5","fdec":-99999.9,"dur":{"months":1,"days":2,"milliseconds":3},
"next":{"b":false,"i":0,"l":0,"f":0,"d":0,"s":"","by":"","fx":"AAAAAA==","e":"GREEN","arr":[],"m":{},"u":null,"u3":7,"uuid":"123e4567-e89b-12d3-a456-426614174000","ts":0,"tsu":0,"date":0,"tm":0,"tu":0,"dec":0,"fdec":"0","dur":{}}}`
	v, err := s.FromJSON([]byte(in))
	fmt.Printf("%#v %v\n", v, err)
	b, err := s.Encode(v)
	fmt.Println(len(b), err)
	d, err := s.Decode(b)
	fmt.Printf("%#v %v\n", d, err)
	j, err := s.DecodeJSON(b)
	fmt.Println(string(j), err)
}
