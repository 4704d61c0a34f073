package kubewatch

import (
	"testing"

	"github.com/roost-net/roost/internal/testenv"
)

// TestDeps keeps client-go's clientset and informers out of this package:
// roost-agent links it for its VIPs.
func TestDeps(t *testing.T) { testenv.NoClientset(t) }
