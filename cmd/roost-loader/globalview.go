package main

import (
	"context"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/roost-net/roost/internal/globalview"
	"github.com/roost-net/roost/internal/loaderconfig"
	"github.com/roost-net/roost/internal/policyd"
)

// globalView is the loader's connection to the global endpoint view: a
// subscriber of every origin and, when publishing, the publisher of the
// cluster's own endpoints.
type globalView struct {
	client *globalview.Client
	sub    *globalview.Subscriber
	pub    *globalview.Publisher // nil when not publishing
	log    logrus.FieldLogger
	// onView receives the subscriber's views; set by start, before the
	// subscriber runs.
	onView func(globalview.View)
}

// newGlobalView returns nil when cfg has no global view. Nothing is sent
// to etcd before start.
func newGlobalView(cfg loaderconfig.Config, log logrus.FieldLogger) (*globalView, error) {
	if !cfg.GlobalView.Enabled {
		return nil, nil
	}
	c, err := globalview.New(cfg.GlobalView.Etcd)
	if err != nil {
		return nil, fmt.Errorf("globalView: %w", err)
	}
	g := &globalView{client: c, log: log.WithField("component", "globalview")}
	g.sub = globalview.NewSubscriber(c, globalview.SubscriberOptions{Log: g.log}, func(v globalview.View) { g.onView(v) })
	if cfg.GlobalView.Publish {
		g.pub, err = globalview.NewPublisher(c, globalview.ClusterOrigin(cfg.Cluster), globalview.PublisherOptions{
			ID: cfg.Node, TTL: cfg.GlobalView.PublishTTL, Log: g.log,
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("globalView: %w", err)
		}
	}
	return g, nil
}

// hooks returns what policyd needs of g; none for a nil g.
func (g *globalView) hooks() policyd.GlobalView {
	if g == nil {
		return policyd.GlobalView{}
	}
	var h policyd.GlobalView
	if g.pub != nil {
		h.Publish = func(eps []globalview.Endpoint, nodes []globalview.Node) error {
			_, err := g.pub.Set(eps, nodes)
			return err
		}
	}
	h.Status = func() (globalview.SubscriberStatus, *globalview.PublisherStatus) {
		s := g.sub.Status()
		if g.pub == nil {
			return s, nil
		}
		p := g.pub.Status()
		return s, &p
	}
	return h
}

// start runs the subscriber, which hands every view to d, and the
// publisher.
func (g *globalView) start(ctx context.Context, d *policyd.Daemon, start func(string, func() error)) {
	g.onView = d.SetView
	start("global view", func() error { return g.sub.Run(ctx) })
	if g.pub != nil {
		start("global view publisher", func() error { return g.pub.Run(ctx) })
	}
}
