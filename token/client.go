package token

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
)

// Create stores spec as a new Secret. It never overwrites: a token whose
// ID exists already is an error. Errors name the Secret, never the secret.
func Create(ctx context.Context, client kubernetes.Interface, spec Spec) error {
	s, err := NewSecret(spec)
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("bootstrap token %s exists already (Secret kube-system/%s): choose another token or let one be generated", spec.Token.ID, s.Name)
	case err != nil:
		return fmt.Errorf("creating Secret kube-system/%s: %w", s.Name, err)
	}
	return nil
}

// List returns the bootstrap tokens of kube-system (Secrets of type
// bootstrap.kubernetes.io/token), sorted by ID.
func List(ctx context.Context, client kubernetes.Interface) ([]Info, error) {
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing bootstrap token Secrets in kube-system: %w", err)
	}
	infos := make([]Info, 0, len(list.Items))
	for i := range list.Items {
		infos = append(infos, InfoFromSecret(&list.Items[i]))
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.ID, b.ID) })
	return infos, nil
}

// Delete deletes the token with the given ID. A token that does not exist
// is an error that says so.
func Delete(ctx context.Context, client kubernetes.Interface, id string) error {
	name := SecretName(id)
	err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, name, metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("bootstrap token %s does not exist (no Secret kube-system/%s): see 'tlsboot token list'", id, name)
	case err != nil:
		return fmt.Errorf("deleting Secret kube-system/%s: %w", name, err)
	}
	return nil
}
