// Package e2e holds roost's end-to-end tests: real BIRD, FRR ToRs, and the
// roost-agent, roost-loader and roostctl binaries, built once per run, on a
// fabric of network namespaces shaped like the lab's (docs/lab.md), with real
// traffic between pods on different nodes. Every test is privileged (see
// internal/testenv) and uses only namespaces, files and mounts it makes.
package e2e
