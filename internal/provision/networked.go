package provision

import (
	"context"
	"errors"

	"github.com/codebench/codebench/internal/template"
)

// Network is what the networked supply needs of the network manager: a
// NIC per sandbox, and a teardown of everything at the end.
type Network interface {
	template.Networker
	Close(ctx context.Context) error
}

// Networked is the sandbox supply for jobs that ask for a network: each a
// clone of a template with a network device (or a cold boot), attached to
// a network of its own when it is made, detached when it stops. They are
// made on demand, not kept warm: a networked job waits for a restore.
type Networked struct {
	Net  Network
	Prov *Provisioner
}

// Take makes a networked sandbox for one job.
func (n *Networked) Take(ctx context.Context) (*Member, error) { return n.Prov.Provision(ctx) }

// Close stops the provisioner, then takes the network down (ctx bounds it).
func (n *Networked) Close(ctx context.Context) error {
	n.Prov.Close()
	if err := n.Net.Close(ctx); err != nil {
		return errors.Join(errors.New("network: teardown"), err)
	}
	return nil
}
