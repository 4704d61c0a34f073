package main

import "errors"

// Stand-ins until the commands are ported from scripts/lab.sh; removed
// then.

var errNotYet = errors.New("not ported yet: use scripts/lab.sh")

func (l *lab) up() error     { return errNotYet }
func (l *lab) status() error { return errNotYet }
func (l *lab) down() error   { return errNotYet }
