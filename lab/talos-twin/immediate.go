package main

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
)

// canApplyImmediate tells whether a new config differs from the active one only in parts Talos applies
// without a reboot (Talos 1.13's list: debug, cluster, and these machine sections). The error carries the
// diff of the rest, as Talos reports it.
func canApplyImmediate(n *node, cfg config.Provider) error {
	if n.active == nil {
		return errors.New("no current config")
	}

	current := n.active.RawV1Alpha1()
	if current == nil {
		return errors.New("current config is not v1alpha1")
	}

	if cfg.RawV1Alpha1() == nil {
		return errors.New("new config is not v1alpha1")
	}

	// take the live-applicable parts from the current config; whatever still differs needs a reboot
	masked := cfg.RawV1Alpha1().DeepCopy()
	masked.ConfigDebug = current.ConfigDebug
	masked.ClusterConfig = current.ClusterConfig

	if m, c := masked.MachineConfig, current.MachineConfig; m != nil && c != nil {
		m.MachineCA, m.MachineAcceptedCAs, m.MachineCertSANs = c.MachineCA, c.MachineAcceptedCAs, c.MachineCertSANs
		m.MachineTime, m.MachineInstall, m.MachineNetwork = c.MachineTime, c.MachineInstall, c.MachineNetwork //nolint:staticcheck
		m.MachineSysfs, m.MachineSysctls, m.MachineLogging = c.MachineSysfs, c.MachineSysctls, c.MachineLogging
		m.MachineControlPlane, m.MachineKubelet, m.MachineKernel = c.MachineControlPlane, c.MachineKubelet, c.MachineKernel
		m.MachineRegistries, m.MachinePods, m.MachineSeccompProfiles = c.MachineRegistries, c.MachinePods, c.MachineSeccompProfiles //nolint:staticcheck
		m.MachineNodeAnnotations, m.MachineNodeLabels, m.MachineNodeTaints = c.MachineNodeAnnotations, c.MachineNodeLabels, c.MachineNodeTaints

		if mf, cf := m.MachineFeatures, c.MachineFeatures; mf != nil && cf != nil {
			mf.KubernetesTalosAPIAccessConfig, mf.KubePrismSupport = cf.KubernetesTalosAPIAccessConfig, cf.KubePrismSupport
			mf.HostDNSSupport, mf.ImageCacheSupport = cf.HostDNSSupport, cf.ImageCacheSupport
			mf.FeatureNodeAddressSortAlgorithm = cf.FeatureNodeAddressSortAlgorithm
		}
	}

	if reflect.DeepEqual(current, masked) {
		return nil
	}

	diff, err := configdiff.DiffConfigs(container.NewV1Alpha1(current), container.NewV1Alpha1(masked))
	if err != nil {
		return fmt.Errorf("error calculating diff: %w", err)
	}

	return fmt.Errorf("this config change can't be applied in immediate mode\ndiff:\n%s", diff)
}
