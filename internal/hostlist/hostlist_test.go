package hostlist

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestCompress(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"empty", nil, ""},
		{"one", []string{"web1"}, "web1"},
		{"range", names("web", 1, 40), "web[1-40]"},
		{"range and single", append(names("web", 1, 40), "web42"), "web[1-40,42]"},
		{"two consecutive", []string{"staging-1", "staging-2"}, "staging-[1-2]"},
		{"unsorted", []string{"web3", "web1", "web2", "web7"}, "web[1-3,7]"},
		{"lexically sorted", []string{"s-1", "s-10", "s-11", "s-2", "s-3", "s-4", "s-5", "s-6", "s-7", "s-8", "s-9"}, "s-[1-11]"},
		{"duplicates", []string{"web2", "web1", "web2", "web1"}, "web[1-2]"},
		{"groups in order of first name", []string{"db1", "web1", "db2", "web2", "cache"}, "db[1-2], web[1-2], cache"},
		{"no numbers", []string{"alpha", "beta", "alpha"}, "alpha, beta"},
		{"zero padding", names("web0", 1, 9), "web[01-09]"},
		{"padding to 10", append(names("web0", 1, 9), "web10"), "web[01-10]"},
		{"padded and unpadded apart", []string{"web1", "web01", "web2", "web02"}, "web[1-2], web[01-02]"},
		{"wider unpadded stays apart", []string{"web08", "web09", "web100"}, "web[08-09], web100"},
		{"zero alone", []string{"n0", "n1"}, "n[0-1]"},
		{"double zero", []string{"n00", "n01", "n0"}, "n[00-01], n0"},
		{"suffix", []string{"db3.eu", "db4.eu", "db3.us"}, "db[3-4].eu, db3.us"},
		{"last digits", []string{"a1b2", "a1b3", "a2b2"}, "a1b[2-3], a2b2"},
		{"digits then letters", []string{"r1a", "r2a", "r3b"}, "r[1-2]a, r3b"},
		{"unicode", []string{"wéb-1", "wéb-2", "服务器3", "服务器4", "ünï"}, "wéb-[1-2], 服务器[3-4], ünï"},
		{"unicode digits are letters", []string{"h١", "h٢"}, "h١, h٢"},
		{"huge number literal", []string{"h99999999999999999999", "h99999999999999999998"}, "h99999999999999999999, h99999999999999999998"},
		{"18 digits fold", []string{"h999999999999999998", "h999999999999999999"}, "h[999999999999999998-999999999999999999]"},
		{"leading zeros long", []string{"h0000000000000000001", "h0000000000000000002"}, "h0000000000000000001, h0000000000000000002"},
		{"empty name kept", []string{"", "a1"}, ", a1"},
		{"holes", []string{"w1", "w3", "w5", "w6", "w7", "w9"}, "w[1,3,5-7,9]"},
		{"only digits", []string{"1", "2", "3"}, "[1-3]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Compress(tt.in)
			if got != tt.want {
				t.Fatalf("Compress(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got2 := Compress(tt.in); got2 != got {
				t.Fatalf("not deterministic: %q then %q", got, got2)
			}
			if Abbrev(tt.in, 1<<30) != got {
				t.Fatalf("Abbrev without a cap = %q, want %q", Abbrev(tt.in, 1<<30), got)
			}
		})
	}
}

func TestCompressThousand(t *testing.T) {
	if got := Compress(names("host", 1, 1000)); got != "host[1-1000]" {
		t.Fatalf("got %q", got)
	}
	var odd []string
	for i := 1; i <= 1000; i += 2 {
		odd = append(odd, fmt.Sprintf("host%d", i))
	}
	full := Compress(odd)
	back, err := Expand(full)
	if err != nil || !slices.Equal(back, odd) {
		t.Fatalf("Expand(Compress(odd)) = %d names, %v", len(back), err)
	}
}

func TestAbbrev(t *testing.T) {
	var odd []string
	for i := 1; i <= 1000; i += 2 {
		odd = append(odd, fmt.Sprintf("host%d", i))
	}
	tests := []struct {
		name string
		in   []string
		max  int
		want string
	}{
		{"fits", names("web", 1, 40), 10, "web[1-40]"},
		{"cut between groups", []string{"a1", "b1", "c1", "d1"}, 6, "a1, b1 … and 2 more"},
		{"cut inside a group", odd, 20, "host[1,3,5,7,9,11] … and 494 more"},
		{"first range always", []string{"averyveryverylongname", "b"}, 3, "averyveryverylongname … and 1 more"},
		{"first group cut", odd[:5], 1, "host1 … and 4 more"},
		{"ranges count their names", []string{"w1", "w2", "w3", "x1", "y5"}, 9, "w[1-3] … and 2 more"},
		{"nothing after the cut", []string{"aaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbb", "c"}, 12, "aaaaaaaa … and 2 more"},
		{"empty", nil, 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Abbrev(tt.in, tt.max); got != tt.want {
				t.Fatalf("Abbrev(%d names, %d) = %q, want %q", len(tt.in), tt.max, got, tt.want)
			}
		})
	}
	// At LineMax the names part stays within the cap.
	var random []string
	for i := range 1000 {
		random = append(random, fmt.Sprintf("web-%x.example", i*7919%1000+4096))
	}
	got := Abbrev(random, LineMax)
	names, _, _ := strings.Cut(got, " … and ")
	if n := utf8.RuneCountInString(names); n > LineMax || !strings.HasSuffix(got, " more") {
		t.Fatalf("Abbrev of 1000 unfoldable names: %d runes: %q", n, got)
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		total  int
		failed []string
		want   string
	}{
		{0, nil, "0 hosts"},
		{1, nil, "1 host"},
		{40, nil, "40 hosts"},
		{40, []string{"web7", "web3"}, "40 hosts (failed: web[3,7])"},
		{1000, names("web", 1, 1000), "1000 hosts (failed: web[1-1000])"},
	}
	for _, tt := range tests {
		if got := Summary(tt.total, tt.failed); got != tt.want {
			t.Errorf("Summary(%d, %q) = %q, want %q", tt.total, tt.failed, got, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"web1", []string{"web1"}},
		{"web[1-3,7]", []string{"web1", "web2", "web3", "web7"}},
		{"web[08-10].eu, db", []string{"web08.eu", "web09.eu", "web10.eu", "db"}},
		{"web[07,10]", []string{"web07", "web10"}},
		{"[1-2]", []string{"1", "2"}},
	}
	for _, tt := range tests {
		got, err := Expand(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"web[", "web[1-", "web[3-1]", "web[a]", "web[1]x[2]", "web]", "w[0-999999999999]", "w[01-100]", "w[1--2]", "w[]"} {
		if got, err := Expand(bad); err == nil {
			t.Errorf("Expand(%q) = %q, want an error", bad, got)
		}
	}
}

// roundTrippable: the names Expand can read back from Compress.
func roundTrippable(name string) bool {
	return name != "" && !strings.ContainsAny(name, "[], \n")
}

func FuzzCompress(f *testing.F) {
	for _, seed := range []string{
		"web1\nweb2\nweb3", "web01\nweb10\nweb1", "a1b2\na1b3", "x\n\nx", "h99999999999999999999\nh1",
		"wéb-1\nwéb-2", "n0\nn00\nn000", "db3.eu\ndb4.eu", "a[1]\nb,c", "0\n00\n000\n1\n01",
	} {
		f.Add(seed, 40)
	}
	f.Fuzz(func(t *testing.T, input string, max int) {
		all := strings.Split(input, "\n")
		got := Compress(all)
		if Compress(all) != got {
			t.Fatal("not deterministic")
		}
		if Abbrev(all, 1<<30) != got {
			t.Fatalf("Abbrev without a cap %q != Compress %q", Abbrev(all, 1<<30), got)
		}
		var names []string
		for _, n := range all {
			if roundTrippable(n) {
				names = append(names, n)
			}
		}
		checkAbbrev(t, names, max)
		back, err := Expand(Compress(names))
		if err != nil {
			t.Fatalf("Expand(Compress(%q)) = %v", names, err)
		}
		want := slices.Clone(names)
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(back)
		if !slices.Equal(back, want) {
			t.Fatalf("Expand(Compress(%q)) = %q, want %q (compressed %q)", names, back, want, Compress(names))
		}
		if len(back) != len(slices.Compact(slices.Clone(back))) {
			t.Fatalf("Expand(Compress(%q)) has duplicates: %q", names, back)
		}
	})
}

// checkAbbrev: the names Abbrev shows are names of the list, and the ones
// it counts as more are the rest.
func checkAbbrev(t *testing.T, names []string, max int) {
	short := Abbrev(names, max)
	shownPart, more, cut := strings.Cut(short, " … and ")
	shown, err := Expand(shownPart)
	if err != nil {
		t.Fatalf("Abbrev(%q, %d) = %q: %v", names, max, short, err)
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(names)))
	for _, n := range shown {
		if _, ok := slices.BinarySearch(distinct, n); !ok {
			t.Fatalf("Abbrev(%q, %d) = %q shows %q, not in the list", names, max, short, n)
		}
	}
	n := 0
	if cut {
		if _, err := fmt.Sscanf(more, "%d more", &n); err != nil || n <= 0 {
			t.Fatalf("Abbrev(%q, %d) = %q: bad count", names, max, short)
		}
	}
	if len(shown)+n != len(distinct) {
		t.Fatalf("Abbrev(%q, %d) = %q: %d shown + %d more, want %d", names, max, short, len(shown), n, len(distinct))
	}
}
