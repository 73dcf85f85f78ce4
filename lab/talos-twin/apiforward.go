package main

import (
	"io"
	"log"
	"net"
	"sync"
)

// apiForwards make the one kube-apiserver answer on every control plane's own address, port of the
// cluster endpoint, as on Talos where each control plane runs its own API server and the endpoint (a VIP)
// is only one more address. The process binds one address only; a plain TCP relay keeps its TLS end to end.
type apiForwards struct {
	mu      sync.Mutex
	byIP    map[string]net.Listener
	backend string // host:port of the API server
}

// sync relays from each control plane in ips to backend and closes the relays of the others.
func (f *apiForwards) sync(ips []string, backend string) {
	f.mu.Lock()
	defer f.mu.Unlock()

	if f.byIP == nil || backend != f.backend {
		f.closeLocked()
		f.byIP, f.backend = map[string]net.Listener{}, backend
	}

	host, port, err := net.SplitHostPort(backend)
	if err != nil {
		return
	}

	wanted := map[string]bool{}

	for _, ip := range ips {
		if ip == host {
			continue // the endpoint is this control plane's address: the API server itself listens there
		}

		wanted[ip] = true
		if f.byIP[ip] != nil {
			continue
		}

		lis, err := net.Listen("tcp", net.JoinHostPort(ip, port))
		if err != nil {
			log.Printf("talos-twin: API server on %s: %v (retrying)", ip, err)

			continue
		}

		f.byIP[ip] = lis
		go relay(lis, backend)
	}

	for ip, lis := range f.byIP {
		if !wanted[ip] {
			lis.Close() //nolint:errcheck
			delete(f.byIP, ip)
		}
	}
}

func (f *apiForwards) close() {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.closeLocked()
}

func (f *apiForwards) closeLocked() {
	for ip, lis := range f.byIP {
		lis.Close() //nolint:errcheck
		delete(f.byIP, ip)
	}
}

// relay copies each accepted connection to backend and back until either side closes.
func relay(lis net.Listener, backend string) {
	for {
		conn, err := lis.Accept()
		if err != nil {
			return // closed
		}

		go func() {
			defer conn.Close() //nolint:errcheck

			upstream, err := net.Dial("tcp", backend)
			if err != nil {
				return // the client sees the connection closed, as with an API server that is down
			}
			defer upstream.Close() //nolint:errcheck

			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src) //nolint:errcheck
				if tcp, ok := dst.(*net.TCPConn); ok {
					tcp.CloseWrite() //nolint:errcheck
				}
				done <- struct{}{}
			}

			go pipe(upstream, conn)
			go pipe(conn, upstream)
			<-done
			<-done
		}()
	}
}
