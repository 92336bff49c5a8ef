package choose

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/sandbox"
)

type fakeDriver struct{ name string }

func (f fakeDriver) Name() string { return f.name }
func (f fakeDriver) Start(context.Context, sandbox.Spec) (sandbox.VM, error) {
	return nil, errors.New("fake")
}

func cand(name string, boundary bool, err error, probed *[]string) Candidate {
	return Candidate{Name: name, Boundary: boundary, Probe: func(context.Context) (sandbox.Driver, string, error) {
		*probed = append(*probed, name)
		if err != nil {
			return nil, "", err
		}
		return fakeDriver{name}, name + " works", nil
	}}
}

func TestChoose(t *testing.T) {
	noKVM := errors.New("KVM test boot did not reach the agent")
	noRunsc := errors.New("runsc not found")
	tests := []struct {
		name     string
		kvm, gv  error
		allowTCG bool
		all      bool
		want     string // chosen, "" for none
		probed   string
	}{
		{"KVM works: the microVM, nothing else tried", nil, nil, false, false, "qemu-kvm", "qemu-kvm"},
		{"no KVM: gVisor", noKVM, nil, false, false, "gvisor", "qemu-kvm,gvisor"},
		{"no KVM, no gVisor, TCG not allowed: refuse", noKVM, noRunsc, false, false, "", "qemu-kvm,gvisor,qemu-tcg"},
		{"no KVM, no gVisor, TCG allowed", noKVM, noRunsc, true, false, "qemu-tcg", "qemu-kvm,gvisor,qemu-tcg"},
		{"TCG allowed does not beat gVisor", noKVM, nil, true, false, "gvisor", "qemu-kvm,gvisor"},
		{"doctor probes them all", noKVM, nil, false, true, "gvisor", "qemu-kvm,gvisor,qemu-tcg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probed []string
			c, err := Choose(context.Background(), []Candidate{
				cand("qemu-kvm", true, tt.kvm, &probed),
				cand("gvisor", true, tt.gv, &probed),
				cand("qemu-tcg", false, nil, &probed),
			}, tt.allowTCG, tt.all)
			if got := strings.Join(probed, ","); got != tt.probed {
				t.Fatalf("probed %s, want %s", got, tt.probed)
			}
			if tt.want == "" {
				if !errors.Is(err, ErrNone) || c.Driver != nil || !strings.Contains(err.Error(), "not a security boundary") {
					t.Fatalf("chose %v, err %v", c.Driver, err)
				}
				return
			}
			if err != nil || c.Name != tt.want || c.Driver.Name() != tt.want {
				t.Fatalf("chose %q (%v), want %s", c.Name, err, tt.want)
			}
			chosen := 0
			for _, r := range c.Reports {
				if r.Chosen {
					chosen++
				}
				if r.Detail == "" {
					t.Fatalf("report without a reason: %+v", r)
				}
			}
			if chosen != 1 || len(c.Reports) != 3 {
				t.Fatalf("reports %v", c.Reports)
			}
		})
	}
}
