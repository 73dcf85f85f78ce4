package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// process is a child (etcd, kube-apiserver) in its own process group that dies with the twin.
type process struct {
	cmd    *exec.Cmd
	exited atomic.Bool
	done   chan struct{}
}

// firstStart holds a delay for the first start of a binary (profile.go): kube-apiserver is a static pod
// whose image the kubelet pulls first. The child is then a shell that sleeps and execs the binary, so it
// runs (and is stopped) as the process from the start, but answers only after the delay.
var firstStart = struct {
	sync.Mutex
	delays map[string]time.Duration
}{delays: map[string]time.Duration{}}

func delayFirstStart(binary string, delay time.Duration) {
	if binary != "" && delay > 0 {
		firstStart.Lock()
		firstStart.delays[binary] = delay
		firstStart.Unlock()
	}
}

func startProcess(binary string, args []string, logPath string) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, err
	}

	firstStart.Lock()
	delay := firstStart.delays[binary]
	delete(firstStart.delays, binary)
	firstStart.Unlock()

	if delay > 0 {
		args = append([]string{"-c", fmt.Sprintf(`sleep %.1f && exec "$0" "$@"`, delay.Seconds()), binary}, args...)
		binary = "/bin/sh"
	}

	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: a twin killed without cleanup takes its children along
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}

	if err = cmd.Start(); err != nil {
		logFile.Close() //nolint:errcheck

		return nil, err
	}

	p := &process{cmd: cmd, done: make(chan struct{})}

	go func() {
		cmd.Wait()      //nolint:errcheck // the exit shows as !alive(); the log says why
		logFile.Close() //nolint:errcheck
		p.exited.Store(true)
		close(p.done)
	}()

	return p, nil
}

func (p *process) alive() bool { return !p.exited.Load() }

// stop sends SIGTERM to the group, then SIGKILL after 10 s.
func (p *process) stop() {
	if !p.alive() {
		return
	}

	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) //nolint:errcheck

	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck
		<-p.done
	}
}

func waitFor(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)

	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}

		time.Sleep(100 * time.Millisecond)
	}
}

func checkTCP(address string) error {
	conn, err := net.DialTimeout("tcp", address, 500*time.Millisecond)
	if err != nil {
		return err
	}

	return conn.Close()
}
