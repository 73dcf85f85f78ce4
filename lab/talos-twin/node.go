package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// applyRecord is one ApplyConfiguration that changed something (dry runs are not recorded).
type applyRecord struct {
	Time        time.Time `json:"time"`
	Mode        string    `json:"mode"`
	Maintenance bool      `json:"maintenance"`
}

// persisted is what survives a restart besides the config files.
type persisted struct {
	Name         string        `json:"name"`
	IP           string        `json:"ip"`
	Bootstrapped bool          `json:"bootstrapped"`
	Reboots      int           `json:"reboots"`
	Version      string        `json:"version,omitempty"` // after an upgrade: the installed image's tag
	Applies      []applyRecord `json:"applies"`
	// BootstrapAt: when bootstrap was asked for; Bootstrapped follows once etcd has started (profile.go)
	BootstrapAt time.Time `json:"bootstrap_at,omitzero"`
}

// node is one simulated machine. Without an active config it is in maintenance mode.
type node struct {
	name, ip, dir string

	mu     sync.Mutex
	state  persisted
	active config.Provider // nil: maintenance mode
	staged []byte          // config waiting for the next reboot (mode staged)
	tls    tlsCache
	// installing: the first config was accepted; the node installs and reboots (profile.go), its API is down
	installing bool

	// issuers maps a machine CA certificate (PEM) to its key, from every control plane's config: a worker's
	// config carries the CA without its key, and real workers get their API certificate from trustd on a
	// control plane, so a worker's certificate can only be issued once a control plane holds the key.
	issuers *sync.Map
}

const (
	activeFile = "config.yaml"
	stagedFile = "staged.yaml"
	stateFile  = "state.json"
)

func loadNode(stateDir, name, ip string, issuers *sync.Map) (*node, error) {
	n := &node{name: name, ip: ip, dir: filepath.Join(stateDir, name), issuers: issuers}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}

	data, err := os.ReadFile(filepath.Join(n.dir, stateFile))
	switch {
	case err == nil:
		if err = json.Unmarshal(data, &n.state); err != nil {
			return nil, fmt.Errorf("%s: %w", stateFile, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}

	n.state.Name, n.state.IP = name, ip

	if raw, err := os.ReadFile(filepath.Join(n.dir, activeFile)); err == nil {
		if n.active, err = configloader.NewFromBytes(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", activeFile, err)
		}

		n.registerIssuer()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}

	if raw, err := os.ReadFile(filepath.Join(n.dir, stagedFile)); err == nil {
		n.staged = raw
	}

	// the twin stopped while etcd was starting after a bootstrap: it has started by now
	if !n.state.BootstrapAt.IsZero() && n.active != nil {
		n.state.Bootstrapped = true
	}

	return n, n.save()
}

// install keeps the first config on the disk and takes the node's API down until it has installed and
// rebooted (fleet.installAndReboot); a restart of the twin meanwhile brings it back configured.
func (n *node) install(raw []byte) error {
	if err := writeAtomic(filepath.Join(n.dir, activeFile), raw); err != nil {
		return err
	}

	n.installing = true
	n.tls = tlsCache{}

	return nil
}

// bootInstalled is the node's first boot from its disk: the config there becomes the running one.
// Callers hold n.mu.
func (n *node) bootInstalled(raw []byte) error {
	n.installing = false

	cfg, err := configloader.NewFromBytes(raw)
	if err != nil {
		return err
	}

	if err = n.applyPersisted(cfg, raw); err != nil {
		return err
	}

	n.state.Reboots++

	return n.save()
}

func (n *node) modeName() string {
	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return "maintenance"
	}

	return "configured"
}

// save writes state.json; callers hold n.mu or own n exclusively.
func (n *node) save() error {
	data, err := json.MarshalIndent(n.state, "", "  ")
	if err != nil {
		return err
	}

	return writeAtomic(filepath.Join(n.dir, stateFile), append(data, '\n'))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}

	return os.Rename(tmp, path)
}

// setActive makes cfg the running config (and the one persisted for the next boot).
func (n *node) setActive(cfg config.Provider, raw []byte) error {
	if err := writeAtomic(filepath.Join(n.dir, activeFile), raw); err != nil {
		return err
	}

	n.active = cfg
	n.tls = tlsCache{}
	n.registerIssuer()

	return nil
}

func (n *node) registerIssuer() {
	if ca := n.active.Machine().Security().IssuingCA(); ca != nil && len(ca.Crt) > 0 && len(ca.Key) > 0 {
		n.issuers.Store(string(ca.Crt), ca.Key)
	}
}

// applyPersisted makes a config active; a staged one is dropped (the new config was persisted over it).
func (n *node) applyPersisted(cfg config.Provider, raw []byte) error {
	if err := n.setActive(cfg, raw); err != nil {
		return err
	}

	n.staged = nil

	if err := os.Remove(filepath.Join(n.dir, stagedFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	return nil
}

// wipeLocked is a reset: no config, active or staged, and the state of a fresh machine (reboots counted on).
func (n *node) wipeLocked() error {
	for _, file := range []string{activeFile, stagedFile} {
		if err := os.Remove(filepath.Join(n.dir, file)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}

	n.active, n.staged, n.tls, n.installing = nil, nil, tlsCache{}, false
	n.state = persisted{Name: n.name, IP: n.ip, Reboots: n.state.Reboots + 1}

	return n.save()
}

func (n *node) setStaged(raw []byte) error {
	if err := writeAtomic(filepath.Join(n.dir, stagedFile), raw); err != nil {
		return err
	}

	n.staged = raw

	return nil
}

func (n *node) record(mode string, maintenance bool) error {
	n.state.Applies = append(n.state.Applies, applyRecord{Time: time.Now().UTC(), Mode: mode, Maintenance: maintenance})

	return n.save()
}

// caCert is the machine CA certificate (PEM) of the active config; nil in maintenance mode.
func (n *node) caCert() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil || n.active.Machine().Security().IssuingCA() == nil {
		return nil
	}

	return n.active.Machine().Security().IssuingCA().Crt
}
