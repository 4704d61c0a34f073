package maglev_test

import (
	"fmt"

	"github.com/roost-net/roost/internal/maglev"
)

func ExampleBuild() {
	tab, err := maglev.Build([]maglev.Backend{
		{Key: "[fd00::1]:80"},
		{Key: "10.244.1.10:80", Weight: 2},
		{Key: "10.244.2.11:80"},
	}, maglev.DefaultSize)
	if err != nil {
		fmt.Println(err)
		return
	}
	n := make([]int, len(tab.Keys))
	for _, e := range tab.Entries {
		n[e]++
	}
	for i, k := range tab.Keys {
		fmt.Printf("%s: %d entries\n", k, n[i])
	}
	fmt.Println("flow hash 42 goes to", tab.Keys[tab.Lookup(42)])

	empty, _ := maglev.Build(nil, maglev.DefaultSize)
	fmt.Println("no backends:", empty.Empty(), empty.Lookup(42))
	// Output:
	// 10.244.1.10:80: 32769 entries
	// 10.244.2.11:80: 16384 entries
	// [fd00::1]:80: 16384 entries
	// flow hash 42 goes to 10.244.2.11:80
	// no backends: true -1
}
