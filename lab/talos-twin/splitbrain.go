package main

import (
	"encoding/json"
	"errors"
	"log"
	"os"
	"path/filepath"
	"time"
)

// splitRecord is one bootstrap that founded a second etcd cluster beside a running one.
type splitRecord struct {
	Time   time.Time `json:"time"`
	Node   string    `json:"node"`   // the control plane bootstrapped again
	Others []string  `json:"others"` // the members of the cluster already running
}

// splitsFile lists every split brain the twin saw, so a test (or an operator of the lab) can find it
// without reading the log.
func (c *controlPlane) splitsFile() string { return filepath.Join(c.dir, "split-brain.json") }

// recordSplit logs and records that m founds a new etcd cluster while others run one: real Talos does
// the same when `talosctl bootstrap` reaches a control plane without etcd data, and the two clusters
// never meet again. Callers hold c.mu.
func (c *controlPlane) recordSplit(m member, others []string) {
	log.Printf("talos-twin: SPLIT BRAIN: %s was bootstrapped without etcd data and founds a second etcd cluster "+
		"while %v run one", m.name, others)

	var records []splitRecord

	data, err := os.ReadFile(c.splitsFile())
	if err == nil {
		err = json.Unmarshal(data, &records)
	}

	if err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Printf("talos-twin: %s: %v (starting a new list)", c.splitsFile(), err)
	}

	records = append(records, splitRecord{Time: time.Now().UTC(), Node: m.name, Others: others})

	if data, err = json.MarshalIndent(records, "", "  "); err == nil {
		err = writeAtomic(c.splitsFile(), append(data, '\n'))
	}

	if err != nil {
		log.Printf("talos-twin: %s: %v", c.splitsFile(), err)
	}
}
