package testenv

import "testing"

func TestConfigComplaints(t *testing.T) {
	benign := "2026/11/25 21:47:33 BGP: [ZG9QC-QRCJZ] failed to mkdir \"/var/tmp/frr/bgpd.21739\": File exists\n" +
		"2026/11/25 21:47:33 BGP: [M1DC0-ZDNYJ] crashlog and per-thread log buffering unavailable!\n"
	if got := configComplaints([]byte(benign)); len(got) != 0 {
		t.Errorf("benign output counted: %q", got)
	}
	bad := benign + "line 3: % Unknown command: neighbor x\n"
	if got := configComplaints([]byte(bad)); len(got) != 1 {
		t.Errorf("complaints = %q, want the unknown command", got)
	}
}
