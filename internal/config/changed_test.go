package config

import (
	"slices"
	"testing"
)

func TestChanged(t *testing.T) {
	type inner struct{ A int }
	type cfg struct {
		Listen  string   `yaml:"listen"`
		Clients []string `yaml:"clients"`
		Limits  inner    `yaml:"limits"`
		Alarms  inner    `yaml:"alarms"`
		file    string
	}
	old := cfg{Listen: "a", Clients: []string{"x"}, Limits: inner{1}, Alarms: inner{1}, file: "f"}
	for _, tc := range []struct {
		name string
		new  cfg
		want []string
	}{
		{"same", old, nil},
		{"unexported ignored", cfg{Listen: "a", Clients: []string{"x"}, Limits: inner{1}, Alarms: inner{1}, file: "g"}, nil},
		{"reloadable only", cfg{Listen: "a", Clients: []string{"y"}, Limits: inner{2}, Alarms: inner{1}}, nil},
		{"restart needed", cfg{Listen: "b", Clients: []string{"y"}, Limits: inner{1}, Alarms: inner{3}}, []string{"listen", "alarms"}},
	} {
		if got := Changed(&old, &tc.new, "clients", "limits"); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Changed = %v, want %v", tc.name, got, tc.want)
		}
	}
}
