package agent

import (
	"context"
	"fmt"
	"sync"

	"github.com/roost-net/roost/internal/birdctl"
)

// BirdClient is the Bird of a real BIRD behind its control socket. It dials
// on first use, so the agent can start before BIRD does; birdctl redials
// after BIRD restarts.
type BirdClient struct {
	path string

	mu sync.Mutex
	c  *birdctl.Client
}

// NewBirdClient returns a client for the control socket at path.
func NewBirdClient(path string) *BirdClient { return &BirdClient{path: path} }

func (b *BirdClient) client(ctx context.Context) (*birdctl.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return b.c, nil
	}
	c, err := birdctl.Dial(ctx, b.path)
	if err != nil {
		return nil, err
	}
	b.c = c
	return c, nil
}

// Close closes the connection, if any.
func (b *BirdClient) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	return b.c.Close()
}

// CheckConfig runs `configure check "file"`.
func (b *BirdClient) CheckConfig(ctx context.Context, file string) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	return c.ConfigureCheck(ctx, file)
}

// Reconfigure runs `configure "file"`. BIRD answers "Reconfigured" when the
// change needed no protocol restart, or "Reconfiguration in progress" while
// restarted protocols shut down: both mean the new config is taken.
func (b *BirdClient) Reconfigure(ctx context.Context, file string) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	res, err := c.Configure(ctx, birdctl.ConfigureOptions{File: file})
	if err != nil {
		return err
	}
	switch res.Code {
	case birdctl.CodeReconfigured, birdctl.CodeReconfigInProgress, birdctl.CodeReconfigQueued:
		return nil
	}
	return fmt.Errorf("unexpected reply %04d %s", res.Code, res.Message)
}

// State runs `show status` and `show protocols all`.
func (b *BirdClient) State(ctx context.Context) (BirdState, error) {
	c, err := b.client(ctx)
	if err != nil {
		return BirdState{}, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return BirdState{}, err
	}
	ps, err := c.Protocols(ctx, birdctl.ProtocolQuery{All: true})
	if err != nil {
		return BirdState{}, err
	}
	out := BirdState{Version: st.Version, LastReboot: st.LastReboot.String(), Protocols: map[string]ProtocolState{}}
	for _, p := range ps {
		out.Protocols[p.Name] = ProtocolState{State: p.State, BGPState: p.BGPState}
	}
	return out, nil
}
