// Package monitoring holds only tests: they check what compose/monitoring
// ships for Prometheus and Grafana against the daemons' metrics and
// docs/monitoring.md. The alerting rules (roost.rules.yml) must pass
// `promtool check rules` and their unit tests (`promtool test rules
// roost.rules.test.yml`); every alert must have a runbook section in the
// docs; and the rules and the Grafana dashboard may only query the metrics
// and labels roost-agent and roost-loader export, so that a renamed metric
// or a typo fails here instead of making an alert that never fires or a
// panel that stays empty.
package monitoring
