package agent

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/roost-net/roost/internal/birdctl"
)

// BirdClient is the Bird of a real BIRD behind its control socket. It dials
// on first use, so the agent can start before BIRD does; birdctl redials
// after BIRD restarts or a call timed out. One BirdClient is one
// connection: the agent's apply and poll use one each.
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

// Configure runs `configure "file" [timeout N]`. BIRD answers
// "Reconfigured" when the change needed no protocol restart, or
// "Reconfiguration in progress" while restarted protocols shut down: both
// mean the new config is taken.
func (b *BirdClient) Configure(ctx context.Context, file string, timeout time.Duration) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	res, err := c.Configure(ctx, birdctl.ConfigureOptions{File: file, Timeout: timeout})
	if err != nil {
		return err
	}
	switch res.Code {
	case birdctl.CodeReconfigured, birdctl.CodeReconfigInProgress, birdctl.CodeReconfigQueued:
		return nil
	}
	return fmt.Errorf("unexpected reply %04d %s", res.Code, res.Message)
}

// Confirm runs "configure confirm".
func (b *BirdClient) Confirm(ctx context.Context) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	return c.ConfigureConfirm(ctx)
}

// Undo runs "configure undo".
func (b *BirdClient) Undo(ctx context.Context) error {
	c, err := b.client(ctx)
	if err != nil {
		return err
	}
	_, err = c.ConfigureUndo(ctx)
	return err
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
	out := BirdState{
		Version: st.Version, LastReboot: st.LastReboot, LastReconfig: st.LastReconfig,
		Protocols: map[string]ProtocolState{},
	}
	for _, p := range ps {
		s := ProtocolState{State: p.State, BGPState: p.BGPState}
		for _, ch := range p.Channels {
			s.Exported += ch.Exported
		}
		out.Protocols[p.Name] = s
	}
	return out, nil
}

// ParseCheck returns a function that parses a BIRD config file with the
// bird binary at path (`bird -p -c FILE`), without a running BIRD.
func ParseCheck(binary string) func(ctx context.Context, file string) error {
	return func(ctx context.Context, file string) error {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, binary, "-p", "-c", file)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			if msg := strings.TrimSpace(out.String()); msg != "" {
				return fmt.Errorf("%s -p: %s", binary, msg)
			}
			return fmt.Errorf("%s -p: %w", binary, err)
		}
		return nil
	}
}
