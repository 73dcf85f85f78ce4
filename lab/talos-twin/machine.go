package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"github.com/siderolabs/talos/pkg/machinery/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// machineAPI implements machine.MachineService for every node of the fleet; the interceptors put the
// node a call is for into its context. Methods not written here answer Unimplemented.
type machineAPI struct {
	machine.UnimplementedMachineServiceServer

	fleet *fleet
}

// runtimeMode is what config validation asks about the platform: bare metal, installed once configured.
type runtimeMode struct{ installed bool }

func (m runtimeMode) String() string        { return "metal" }
func (m runtimeMode) RequiresInstall() bool { return !m.installed }
func (m runtimeMode) InContainer() bool     { return false }

func (a *machineAPI) Version(ctx context.Context, _ *emptypb.Empty) (*machine.VersionResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	configured := n.active != nil
	installed := n.state.Version
	n.mu.Unlock()

	running := version.NewVersion()
	if installed != "" {
		running.Tag = installed
	}

	msg := &machine.Version{
		Version:  running,
		Platform: &machine.PlatformInfo{Name: "metal", Mode: "metal"},
	}
	if configured {
		msg.Features = &machine.FeaturesInfo{Rbac: true}
	}

	return &machine.VersionResponse{Messages: []*machine.Version{msg}}, nil
}

//nolint:gocyclo,cyclop
func (a *machineAPI) ApplyConfiguration(ctx context.Context, in *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	defer n.mu.Unlock()

	maintenance := n.active == nil

	// readers pass the method rule only so that maintenance mode can apply; a configured node wants os:admin
	if !maintenance && !callerRoles(ctx).Includes(role.Admin) {
		return nil, errNotAuthorized
	}

	cfg, err := configloader.NewFromBytes(in.GetData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	if !maintenance && cfg.RawV1Alpha1() == nil {
		return nil, status.Error(codes.InvalidArgument, "the applied machine configuration doesn't contain v1alpha1 config, did you mean to patch the machine config instead?")
	}

	warnings, err := cfg.Validate(runtimeMode{installed: !maintenance})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	mode := in.GetMode()
	if maintenance && mode == machine.ApplyConfigurationRequest_REBOOT {
		mode = machine.ApplyConfigurationRequest_NO_REBOOT
	}

	label := in.GetMode().String()
	details, detailsErr := "Applied configuration with a reboot", ""

	switch mode { //nolint:exhaustive
	case machine.ApplyConfigurationRequest_TRY, machine.ApplyConfigurationRequest_NO_REBOOT:
		if err = canApplyImmediate(n, cfg); err != nil && !maintenance {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}

		details = "Applied configuration without a reboot"
	case machine.ApplyConfigurationRequest_STAGED:
		details = "Staged configuration to be applied after the next reboot"
	case machine.ApplyConfigurationRequest_AUTO:
		if err = canApplyImmediate(n, cfg); err != nil && !maintenance {
			mode, details, detailsErr = machine.ApplyConfigurationRequest_REBOOT, "Applied configuration with a reboot", ": "+err.Error()
		} else {
			mode, details = machine.ApplyConfigurationRequest_NO_REBOOT, "Applied configuration without a reboot"
		}

		label = fmt.Sprintf("%s(%s)", label, mode)
	}

	if in.GetDryRun() {
		diff, err := diffAgainstActive(n, cfg)
		if err != nil {
			return nil, fmt.Errorf("failed to generate diff: %w", err)
		}

		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode:        mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\n%s", details, diff),
		}}}, nil
	}

	switch {
	case mode == machine.ApplyConfigurationRequest_STAGED && !maintenance:
		err = n.setStaged(in.GetData())
	case mode == machine.ApplyConfigurationRequest_REBOOT:
		// the twin reboots at once: the persisted config comes up active, a staged one is superseded
		n.state.Reboots++
		err = n.applyPersisted(cfg, in.GetData())
	case mode == machine.ApplyConfigurationRequest_TRY:
		// try mode's automatic rollback is not simulated: the config simply becomes active
		details += "\nThe config is applied in 'try' mode (talos-twin does not roll it back)"
		err = n.applyPersisted(cfg, in.GetData())
	case maintenance && timing.installGap() > 0:
		// any mode in maintenance, realistic profile: the node installs and reboots, then runs the config
		err = n.install(in.GetData())
	default: // no-reboot, and any mode in maintenance (fast profile: installed and booted configured at once)
		err = n.applyPersisted(cfg, in.GetData())
	}

	if err == nil {
		err = n.record(strings.ToLower(label), maintenance)
	}

	if err != nil {
		return nil, internalError(err)
	}

	if n.installing {
		go a.fleet.installAndReboot(n, in.GetData())
	}

	log.Printf("talos-twin: node %s: apply config request: mode %s", n.name, strings.ToLower(label))

	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode:        mode,
		Warnings:    warnings,
		ModeDetails: details + detailsErr,
	}}}, nil
}

// diffAgainstActive is the dry-run diff text; an empty container stands for maintenance mode's no config.
func diffAgainstActive(n *node, cfg config.Provider) (string, error) {
	var (
		current config.Encoder
		err     error
	)

	if n.active != nil {
		current = n.active
	} else {
		empty, err := container.New()
		if err != nil {
			return "", err
		}

		current = empty
	}

	diff, err := configdiff.DiffConfigs(current, cfg)
	if err != nil {
		return "", err
	}

	if diff == "" {
		diff = "No changes."
	}

	return "Config diff:\n\n" + diff, nil
}

func (a *machineAPI) Bootstrap(ctx context.Context, _ *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	n := targetOf(ctx)

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	}

	if !n.active.Machine().Type().IsControlPlane() {
		return nil, status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes")
	}

	if n.state.Bootstrapped || !n.state.BootstrapAt.IsZero() || a.fleet.cp.hasEtcdData(hostnameOf(n)) {
		// what Talos answers once etcd has data (founded here, or joined from the running cluster)
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	// etcd is pulled and started first (realistic profile): the control plane sees the bootstrap after that
	n.state.BootstrapAt = time.Now().UTC()
	n.state.Bootstrapped = timing.etcdStart == 0

	if err := n.save(); err != nil {
		return nil, internalError(err)
	}

	if !n.state.Bootstrapped {
		go a.fleet.bootstrapLater(n, timing.etcdStart)
	}

	log.Printf("talos-twin: node %s: bootstrapped", n.name)

	return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
}
