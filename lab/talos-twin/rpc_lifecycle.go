package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// internalError is how the twin reports its own failures (files, certificates) to the caller.
func internalError(err error) error {
	return status.Errorf(codes.Internal, "talos-twin: %v", err)
}

func actorID() string {
	b := make([]byte, 8)
	rand.Read(b) //nolint:errcheck

	return hex.EncodeToString(b)
}

// rebootLocked is what a reboot does to the twin's node: a staged config becomes the running one.
// Callers hold n.mu.
func (n *node) rebootLocked() error {
	n.state.Reboots++

	if n.staged != nil {
		cfg, err := configloader.NewFromBytes(n.staged)
		if err != nil {
			return err
		}

		if err = n.applyPersisted(cfg, n.staged); err != nil {
			return err
		}
	}

	return n.save()
}

// Reboot reboots at once (the twin has no boot time): a staged config is applied.
func (a *machineAPI) Reboot(ctx context.Context, _ *machine.RebootRequest) (*machine.RebootResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	defer n.mu.Unlock()

	if err := n.rebootLocked(); err != nil {
		return nil, internalError(err)
	}

	log.Printf("talos-twin: node %s: rebooted (%d reboots)", n.name, n.state.Reboots)

	return &machine.RebootResponse{Messages: []*machine.Reboot{{ActorId: actorID()}}}, nil
}

// Reset wipes the node back to maintenance mode; a control plane leaves etcd first (the control plane's
// reconcile sees it unconfigured and removes its member), as a graceful reset does.
func (a *machineAPI) Reset(ctx context.Context, _ *machine.ResetRequest) (*machine.ResetResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return nil, status.Error(codes.FailedPrecondition, "reset is not available in maintenance mode")
	}

	if err := n.wipeLocked(); err != nil {
		return nil, internalError(err)
	}

	log.Printf("talos-twin: node %s: reset to maintenance mode", n.name)

	return &machine.ResetResponse{Messages: []*machine.Reset{{ActorId: actorID()}}}, nil
}

// Upgrade (the legacy API talosctl falls back to when LifecycleService is not served) installs the image
// and reboots: the node then reports the image's version.
func (a *machineAPI) Upgrade(ctx context.Context, in *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return nil, status.Error(codes.FailedPrecondition, "upgrade is not available in maintenance mode")
	}

	image := in.GetImage()

	i := strings.LastIndex(image, ":")
	if i < 0 || !strings.HasPrefix(image[i+1:], "v") {
		return nil, status.Errorf(codes.InvalidArgument, "image %q has no version tag", image)
	}

	n.state.Version = image[i+1:]

	if err := n.rebootLocked(); err != nil {
		return nil, internalError(err)
	}

	log.Printf("talos-twin: node %s: upgraded to %s", n.name, n.state.Version)

	return &machine.UpgradeResponse{Messages: []*machine.Upgrade{{Ack: "Upgrade request received", ActorId: actorID()}}}, nil
}
