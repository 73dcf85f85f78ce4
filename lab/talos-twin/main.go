// Command talos-twin answers the Talos machine API (gRPC, port 50000) for many simulated nodes at once,
// one listener per node IP, so the unmodified talosctl can drive them. See docs/lab-talos.md.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	nodesFile := flag.String("nodes", "", "JSON file with [{\"name\": ..., \"ip\": ...}], re-read while running")
	stateDir := flag.String("state", "", "folder where each node's applied config and mode persist")
	port := flag.Int("port", 50000, "port every node listens on")
	reload := flag.Duration("reload", 2*time.Second, "how often the nodes file is re-read")
	etcd := flag.String("etcd", os.Getenv("TURNKEY_ETCD"), "etcd binary run on bootstrap (default $TURNKEY_ETCD)")
	apiserver := flag.String("kube-apiserver", os.Getenv("TURNKEY_KUBE_APISERVER"),
		"kube-apiserver binary run on bootstrap (default $TURNKEY_KUBE_APISERVER)")
	profile := flag.String("profile", "fast", "fast (nothing waits) or realistic (install, reboot, etcd, API server "+
		"and CNI take what real nodes take; docs/lab-talos.md)")
	scale := flag.Float64("time-scale", 1, "multiplies every delay of the profile (tests use a fraction)")
	flag.Parse()

	if err := selectProfile(*profile, *scale); err != nil {
		log.Fatalf("talos-twin: %v", err)
	}

	if *nodesFile == "" || *stateDir == "" {
		log.Fatal("talos-twin: --nodes and --state are required")
	}

	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		log.Fatalf("talos-twin: %v", err)
	}

	delayFirstStart(*apiserver, timing.apiserverStart)

	fleet := newFleet(*stateDir, *port)
	fleet.cp = newControlPlane(fleet, *etcd, *apiserver)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	running := make(chan struct{})

	if fleet.cp.enabled() {
		go func() {
			fleet.cp.run(ctx)
			close(running)
		}()
	} else {
		close(running)
		log.Print("talos-twin: no etcd/kube-apiserver given: bootstrap only records state, no control plane runs")
	}

	// the first load must work: a twin that serves nothing is a configuration error
	if err := fleet.sync(*nodesFile); err != nil {
		log.Fatalf("talos-twin: %v", err)
	}

	log.Printf("talos-twin: serving %d node(s) on port %d", fleet.count(), *port)

	ticker := time.NewTicker(*reload)
	defer ticker.Stop()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	for {
		select {
		case <-ticker.C:
			if err := fleet.sync(*nodesFile); err != nil {
				log.Printf("talos-twin: nodes file: %v (keeping the previous nodes)", err)
			}
		case sig := <-signals:
			log.Printf("talos-twin: %s, stopping", sig)
			fleet.stopAll()
			cancel()
			<-running // etcd and kube-apiserver stopped

			return
		}
	}
}
