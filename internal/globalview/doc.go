// Package globalview is the store of roost's global endpoint view: every
// cluster's endpoints and every outside workload, with their labels, in one
// etcd key space that every roost-loader follows.
//
// A Publisher keeps one origin's endpoints in etcd: a cluster's
// (ClusterOrigin) or a syncer's outside workloads (SyncOrigin). Publishers
// of one origin elect a leader, and only the leader writes, under a lease
// of its own, so that a dead publisher's endpoints expire unless a standby
// rewrites them first. A Subscriber lists every origin's endpoints, then
// watches them, and passes the whole View on after each change; it never
// passes on a view etcd did not give it, so a loader that loses etcd keeps
// enforcing its last view.
//
// The key layout, the value format and who may write where are in
// docs/globalview.md. Client connects to etcd (TLS with client
// certificates) from a Config.
package globalview
