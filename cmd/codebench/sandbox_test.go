package main

import (
	"slices"
	"testing"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox"
)

// TestCandidatesFromTheList: the driver setting picks from the one ordered
// list by each driver's own description, in the list's order; with
// networking on, auto skips the drivers that give no network.
func TestCandidatesFromTheList(t *testing.T) {
	list := []sandbox.Descriptor{
		{Name: "a-vm", Setting: "a", Boundary: true, Networks: true},
		{Name: "b-kvm", Setting: "b", Accel: "kvm", Boundary: true, Networks: true},
		{Name: "c", Setting: "c", Boundary: true},
		{Name: "b-tcg", Setting: "b", Accel: "tcg", Networks: true},
	}
	for _, tc := range []struct {
		driver, accel string
		network       bool
		want          []string
	}{
		{"auto", "auto", false, []string{"a-vm", "b-kvm", "c", "b-tcg"}},
		{"auto", "auto", true, []string{"a-vm", "b-kvm", "b-tcg"}},
		{"b", "auto", false, []string{"b-kvm", "b-tcg"}},
		{"b", "tcg", false, []string{"b-tcg"}},
		{"c", "kvm", true, []string{"c"}}, // asked for by name: no network filter
		{"nope", "auto", false, nil},
	} {
		var cfg config.Config
		cfg.VM.Driver, cfg.VM.Accel, cfg.Network.Enabled = tc.driver, tc.accel, tc.network
		var got []string
		for _, c := range candidates(cfg, list) {
			got = append(got, c.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("driver %s accel %s network %v: %v, want %v", tc.driver, tc.accel, tc.network, got, tc.want)
		}
	}
	var cfg config.Config
	if err := selectDriver(&cfg, list, "b-tcg"); err != nil || cfg.VM.Driver != "b" || cfg.VM.Accel != "tcg" {
		t.Fatalf("select b-tcg: %v %+v", err, cfg.VM)
	}
	if err := selectDriver(&cfg, list, "zz"); err == nil {
		t.Fatal("an unknown name was selected")
	}
}
