package subject_test

import (
	"fmt"

	"github.com/pgjet/pgjet/internal/subject"
)

func Example() {
	s, err := subject.New("pgjet.events")
	if err != nil {
		panic(err)
	}
	subj, _ := s.For("order-123", "shop.order.OrderPlaced")
	fmt.Println(subj)

	odd, _ := s.For("user-ann smith.jr", "shop.user.Renamed")
	fmt.Println(odd)

	stream, typ, _ := s.Parse(odd)
	fmt.Println(stream, typ)

	byCat, _ := s.ByCategory("order")
	byType, _ := s.ByType("shop.order.OrderPlaced")
	byStream, _ := s.ByStream("order-123")
	both, _ := s.ByCategoryAndType("order", "shop.order.OrderPlaced")
	fmt.Println(s.All())
	fmt.Println(byCat)
	fmt.Println(byType)
	fmt.Println(byStream)
	fmt.Println(both)
	// Output:
	// pgjet.events.order.shop:order:OrderPlaced.order-123
	// pgjet.events.user.shop:user:Renamed.user-ann~20smith~2Ejr
	// user-ann smith.jr shop.user.Renamed
	// pgjet.events.>
	// pgjet.events.order.*.*
	// pgjet.events.*.shop:order:OrderPlaced.*
	// pgjet.events.order.*.order-123
	// pgjet.events.order.shop:order:OrderPlaced.*
}

func ExampleEncodeToken() {
	fmt.Println(subject.EncodeToken("order-1.5"))
	fmt.Println(subject.EncodeToken("café"))
	tok, _ := subject.DecodeToken("caf~C3~A9")
	fmt.Println(tok)
	// Output:
	// order-1~2E5
	// caf~C3~A9
	// café
}
