package main

import (
	"fmt"
	"log"
	"time"
)

// timings is how long the things a real node does take, in the twin: the realistic profile's numbers come
// from published logs and issues (docs/lab-talos.md cites each); the fast profile takes none of them.
type timings struct {
	// install: after the first apply-config in maintenance mode, the node pulls the installer image and
	// writes Talos to its disk; its maintenance API is gone from the moment the config is accepted
	install time.Duration
	// reboot: from the end of the install until the API answers again, configured
	reboot time.Duration
	// etcdStart: from `talosctl bootstrap` until the first etcd member runs (image pull, time sync, start)
	etcdStart time.Duration
	// apiserverStart: from the first etcd member until kube-apiserver runs (the kubelet pulls its image and
	// starts the static pod); the twin's first start of the API server waits this long
	apiserverStart time.Duration
	// cniReady: from the Cilium DaemonSet's arrival (or the Node's registration, when later) until the
	// node is Ready (the agent image pulled, the agent started, the CNI config written)
	cniReady time.Duration
}

var profiles = map[string]timings{
	"fast": {},
	"realistic": {
		install:        30 * time.Second,
		reboot:         20 * time.Second,
		etcdStart:      15 * time.Second,
		apiserverStart: 20 * time.Second,
		cniReady:       30 * time.Second,
	},
}

// timing is the profile the twin runs with (main sets it from --profile and --time-scale).
var timing timings

func selectProfile(name string, scale float64) error {
	chosen, ok := profiles[name]
	if !ok {
		return fmt.Errorf("unknown profile %q (fast, realistic)", name)
	}

	if scale <= 0 {
		return fmt.Errorf("--time-scale must be above 0, not %g", scale)
	}

	scaled := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	timing = timings{
		install: scaled(chosen.install), reboot: scaled(chosen.reboot), etcdStart: scaled(chosen.etcdStart),
		apiserverStart: scaled(chosen.apiserverStart), cniReady: scaled(chosen.cniReady),
	}

	if timing != (timings{}) {
		log.Printf("talos-twin: profile %s (x%g): install %s, reboot %s, etcd %s after bootstrap, kube-apiserver %s "+
			"after etcd, Ready %s after Cilium", name, scale, timing.install, timing.reboot, timing.etcdStart,
			timing.apiserverStart, timing.cniReady)
	}

	return nil
}

// installGap is how long the node's API is unreachable after its first config: install, then reboot.
func (t timings) installGap() time.Duration { return t.install + t.reboot }

// installAndReboot is what a node in maintenance mode does once it accepted its first config (the config
// is already on its disk, n.installing set): its API goes away, it installs and reboots, and it comes back
// configured. The listener is closed just after the answer has left, as the maintenance service stops.
func (f *fleet) installAndReboot(n *node, raw []byte) {
	time.Sleep(200 * time.Millisecond)
	f.offline(n)
	log.Printf("talos-twin: node %s: installing to disk and rebooting (API unreachable for %s)", n.name, timing.installGap())
	time.Sleep(timing.installGap() - 200*time.Millisecond)

	if f.lookup(n.ip) != n {
		return // the machine was destroyed meanwhile (the lab wipes its disk)
	}

	n.mu.Lock()
	err := n.bootInstalled(raw)
	n.mu.Unlock()

	if err != nil {
		log.Printf("talos-twin: node %s: boot after install: %v", n.name, err)
	}

	f.online(n)
}

// offline stops serving the node (its listener closes: connections are refused).
func (f *fleet) offline(n *node) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if srv := f.servers[n.ip]; srv != nil && f.nodes[n.ip] == n {
		srv.Stop()
		delete(f.servers, n.ip)
	}
}

// online serves the node again, unless it was removed (or the twin stops) meanwhile.
func (f *fleet) online(n *node) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if f.stopped || f.nodes[n.ip] != n || f.servers[n.ip] != nil {
		return
	}

	srv, err := f.serve(n)
	if err != nil {
		log.Printf("talos-twin: node %s: listening again: %v", n.name, err)

		return
	}

	f.servers[n.ip] = srv
	log.Printf("talos-twin: node %s listening again (%s mode)", n.name, "configured")
}

// bootstrapLater finishes a bootstrap once etcd has been pulled and started: only then does the control
// plane see the node as the one founding etcd. Until then a second bootstrap is refused as a repeat.
func (f *fleet) bootstrapLater(n *node, after time.Duration) {
	time.Sleep(after)

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil || n.state.BootstrapAt.IsZero() {
		return // reset meanwhile
	}

	n.state.Bootstrapped = true
	if err := n.save(); err != nil {
		log.Printf("talos-twin: node %s: %v", n.name, err)

		return
	}

	log.Printf("talos-twin: node %s: etcd starts (bootstrapped %s ago)", n.name, time.Since(n.state.BootstrapAt).Round(time.Second))
}
