package main

import (
	"fmt"
	"log"
	"os"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// bootUserData is what Talos on a cloud platform (Hetzner) does when it boots with no config on its disk:
// it reads the server's user data from the metadata service and, when that is a machine config, installs
// and boots configured with it; maintenance mode is never entered. A config on the disk wins (the user
// data is only read by a machine without one). User data that is not a valid machine config stops the
// boot: the node is not served (real Talos fails its config load instead of opening maintenance mode).
func (n *node) bootUserData(path string) error {
	if path == "" {
		return nil
	}

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active != nil {
		return nil
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("user data: %w", err)
	}

	cfg, err := configloader.NewFromBytes(raw)
	if err != nil {
		return fmt.Errorf("user data is not a machine config: %w", err)
	}

	if _, err = cfg.Validate(runtimeMode{installed: false}); err != nil {
		return fmt.Errorf("user data: the machine config is invalid: %w", err)
	}

	if err = n.applyPersisted(cfg, raw); err != nil {
		return err
	}

	log.Printf("talos-twin: node %s: configured from its user data at boot", n.name)

	return n.record("user-data", false)
}
