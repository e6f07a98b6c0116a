package rotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/connrotation"
	"k8s.io/klog/v2"
)

// Current returns the certificate the Manager holds in memory: the one it
// read from the store in New or later in Run, or the last one it stored or
// its Recover stored. It is nil until the store has held a certificate. It
// is not cleared when the store later reads as empty or broken, nor when the
// certificate expires (the Manager is then replacing it); check Leaf if
// validity matters. Leaf is always set.
//
// The returned value is shared and is never modified by the Manager; the
// caller must not modify it either. Current is safe for concurrent use and
// never waits for the loop.
func (m *Manager) Current() *tls.Certificate { return m.current.Load() }

// GetClientCertificate presents Current as a TLS client certificate; it is
// shaped for tls.Config.GetClientCertificate. With no certificate yet it
// returns an empty &tls.Certificate{} and no error, which crypto/tls takes
// as "send no certificate": the server then decides (the API server treats
// the connection as anonymous). It never fails, is safe for concurrent use
// and never waits for the loop.
func (m *Manager) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if cur := m.Current(); cur != nil {
		return cur, nil
	}
	return &tls.Certificate{}, nil
}

// GetCertificate presents Current as a TLS server certificate; it is shaped
// for tls.Config.GetCertificate. With no certificate yet it returns an
// error, which fails that handshake. It is safe for concurrent use and never
// waits for the loop.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cur := m.Current(); cur != nil {
		return cur, nil
	}
	return nil, fmt.Errorf("rotation: no %s certificate yet", m.opts.Name)
}

// RESTConfig returns a copy of base for client-go clients that authenticate
// as the Manager's live identity, so that a long-running agent never keeps
// talking with an old or expired certificate:
//   - each new TLS connection presents Current (GetClientCertificate): a
//     connection made while Current is nil presents no certificate and is
//     anonymous to the API server;
//   - every connection of the returned config is closed whenever Current
//     changes (a rotation, a recovery, a certificate someone else stored),
//     so that the next request handshakes again with the new certificate
//     (long-lived HTTP/2 connections and watches included). Requests in
//     flight on a closed connection fail and client-go's callers retry, as
//     with the kubelet's certificate transport;
//   - TLS session resumption is off: a resumed session would carry the
//     identity of the handshake that created it.
//
// base's CA, server name, Insecure, NextProtos, Proxy, Dial and
// DisableCompression are kept, moved into the returned config's Transport
// (its TLSClientConfig fields are then empty, as client-go requires with a
// custom Transport); a CAFile is read now, once. base's client certificate
// and key (files or data) are dropped, so client-go starts no reloader of
// its own. base is not modified.
//
// RESTConfig may be called before Run, any number of times, concurrently
// with everything else; all configs it returns share the tracking of
// connections. It returns an error, naming the field, when base is nil or
// already has a Transport or an ExecProvider (which could supply a client
// certificate of its own), or when its TLS settings are invalid.
func (m *Manager) RESTConfig(base *rest.Config) (*rest.Config, error) {
	switch {
	case base == nil:
		return nil, errors.New("rotation: RESTConfig: the base config is nil")
	case base.Transport != nil:
		return nil, errors.New("rotation: RESTConfig: the base config already has a Transport; leave it unset, RESTConfig builds one that presents the live certificate")
	case base.ExecProvider != nil:
		return nil, errors.New("rotation: RESTConfig: the base config has an ExecProvider, which may supply another client certificate; remove it")
	}
	cfg := rest.CopyConfig(base)
	cfg.CertFile, cfg.KeyFile, cfg.CertData, cfg.KeyData = "", "", nil, nil
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("rotation: RESTConfig: TLS settings of the base config: %w", err)
	}
	if tlsCfg == nil { // no TLS setting at all: system roots
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsCfg.Certificates = nil
	tlsCfg.GetClientCertificate = m.GetClientCertificate
	tlsCfg.ClientSessionCache = nil

	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	cfg.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy:               proxy,
		DialContext:         connrotation.NewDialerWithTracker(dial, m.conns).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 25,
		DisableCompression:  cfg.DisableCompression,
	})
	cfg.Dial, cfg.Proxy = nil, nil
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	return cfg, nil
}

// setCurrent makes cert the certificate in memory. When it differs from the
// one before, the connections of RESTConfig clients are closed so that they
// reconnect with it. Only the loop (and New, before it) calls setCurrent,
// so the load and store below do not race with each other.
func (m *Manager) setCurrent(ctx context.Context, cert *tls.Certificate) {
	if cert == nil || len(cert.Certificate) == 0 {
		return
	}
	old := m.current.Load()
	if old != nil && bytes.Equal(old.Certificate[0], cert.Certificate[0]) {
		return
	}
	// Store first: a connection dialled after this presents the new
	// certificate, and one dialled before is closed below.
	m.current.Store(cert)
	m.conns.CloseAll()
	if old != nil {
		klog.FromContext(ctx).V(2).Info("Closed the connections made with the previous certificate")
	}
}
