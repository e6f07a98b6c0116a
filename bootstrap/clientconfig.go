package bootstrap

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/tlsboot/tlsboot/kubeconfig"
)

// LoadClientConfig returns the configs an agent needs at start-up, with the
// kubelet's three cases:
//
//   - no bootstrapPath: both configs come from kubeconfigPath;
//   - kubeconfigPath is usable: both configs come from it;
//   - otherwise certConfig is the bootstrap config (to request a
//     certificate with) and userConfig uses the store's current
//     certificate in certDir, and kubeconfigPath is rewritten to match
//     userConfig, so that later starts use the newest certificate to
//     request the next one.
//
// The two configs never share pointers.
func LoadClientConfig(ctx context.Context, kubeconfigPath, bootstrapPath, certDir string) (certConfig, userConfig *rest.Config, err error) {
	logger := klog.FromContext(ctx)
	if bootstrapPath == "" {
		cfg, err := kubeconfig.Load(kubeconfigPath)
		if err != nil {
			return nil, nil, err
		}
		logger.V(2).Info("No bootstrap kubeconfig given, using the kubeconfig", "kubeconfig", kubeconfigPath)
		return cfg, rest.CopyConfig(cfg), nil
	}
	cfg, _, _, err := usable(kubeconfigPath, time.Now())
	if err != nil {
		return nil, nil, err
	}
	if cfg != nil {
		logger.V(2).Info("Kubeconfig is usable, no bootstrap needed", "kubeconfig", kubeconfigPath)
		return cfg, rest.CopyConfig(cfg), nil
	}
	bootCfg, err := kubeconfig.Load(bootstrapPath)
	if err != nil {
		return nil, nil, fmt.Errorf("bootstrap %w", err)
	}
	warnInsecure(logger, bootCfg, bootstrapPath)
	store, err := openStore(certDir, DefaultCertPrefix)
	if err != nil {
		return nil, nil, err
	}
	userConfig = rest.AnonymousClientConfig(bootCfg)
	userConfig.CertFile, userConfig.KeyFile = store.CurrentPath(), store.CurrentPath()
	if err := kubeconfig.Write(kubeconfigPath, kubeconfig.Node(bootCfg, store.CurrentPath())); err != nil {
		return nil, nil, err
	}
	logger.V(2).Info("Requesting certificates with the bootstrap credentials; the kubeconfig now points at the certificate store", "kubeconfig", kubeconfigPath)
	return bootCfg, userConfig, nil
}
