package service

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// startNATS starts a plain nats-server (no JetStream) on a random loopback port with o's
// authentication and TLS settings, and returns its client URL.
func startNATS(t *testing.T, o *server.Options) string {
	t.Helper()
	o.Host, o.Port, o.NoSigs, o.NoLog = "127.0.0.1", -1, true, true
	s, err := server.NewServer(o)
	require.NoError(t, err)
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	require.True(t, s.ReadyForConnections(10*time.Second), "nats-server did not start")
	return s.ClientURL()
}

// connect connects as a binary would, through Common.ConnectNATS.
func connect(t *testing.T, url string, sec NATSSecurity) error {
	t.Helper()
	c := Common{NATSURL: url, NATSSecurity: sec, DataDir: t.TempDir()}
	n, err := c.ConnectNATS(t.Context(), "pgjet-test", zap.NewNop())
	if err == nil {
		defer n.Close()
		// A round trip proves the server accepted us, not just the socket.
		require.NoError(t, n.Conn.Flush())
	}
	return err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestNATSUserPassword(t *testing.T) {
	t.Parallel()
	url := startNATS(t, &server.Options{Username: "writer", Password: "s3cret-pw"})
	hostPort := url[len("nats://"):]

	require.NoError(t, connect(t, url, NATSSecurity{User: "writer", Password: "s3cret-pw"}))
	require.NoError(t, connect(t, "nats://writer:s3cret-pw@"+hostPort, NATSSecurity{}), "user info in the URL")

	err := connect(t, url, NATSSecurity{User: "writer", Password: "wrong-pw"})
	require.ErrorIs(t, err, nats.ErrAuthorization)
	require.ErrorContains(t, err, "Authorization Violation")
	require.ErrorIs(t, connect(t, url, NATSSecurity{}), nats.ErrAuthorization, "no credentials")
	err = connect(t, "nats://writer:wrong-pw@"+hostPort, NATSSecurity{})
	require.ErrorIs(t, err, nats.ErrAuthorization)
	require.NotContains(t, err.Error(), "wrong-pw")
}

func TestNATSToken(t *testing.T) {
	t.Parallel()
	url := startNATS(t, &server.Options{Authorization: "t0ken-s3cret"})
	require.NoError(t, connect(t, url, NATSSecurity{Token: "t0ken-s3cret"}))
	require.NoError(t, connect(t, "nats://t0ken-s3cret@"+url[len("nats://"):], NATSSecurity{}), "token in the URL")
	err := connect(t, url, NATSSecurity{Token: "other"})
	require.ErrorIs(t, err, nats.ErrAuthorization)
}

func TestNATSNKey(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := user.PublicKey()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	url := startNATS(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})

	require.NoError(t, connect(t, url, NATSSecurity{NKeySeedFile: writeFile(t, "user.nk", string(seed))}))

	stranger, err := nkeys.CreateUser()
	require.NoError(t, err)
	strangerSeed, err := stranger.Seed()
	require.NoError(t, err)
	err = connect(t, url, NATSSecurity{NKeySeedFile: writeFile(t, "stranger.nk", string(strangerSeed))})
	require.ErrorIs(t, err, nats.ErrAuthorization)

	err = connect(t, url, NATSSecurity{NKeySeedFile: writeFile(t, "bad.nk", "not a seed")})
	require.ErrorContains(t, err, "-nats-nkey-seed")
	err = connect(t, url, NATSSecurity{NKeySeedFile: filepath.Join(t.TempDir(), "missing.nk")})
	require.ErrorContains(t, err, "-nats-nkey-seed")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// A .creds file (user JWT + seed) against a server in operator mode, as nsc sets up.
func TestNATSCreds(t *testing.T) {
	t.Parallel()
	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opPub, err := operator.PublicKey()
	require.NoError(t, err)
	opClaims := jwt.NewOperatorClaims(opPub)
	opClaims.Name = "pgjet-test"
	opJWT, err := opClaims.Encode(operator)
	require.NoError(t, err)
	opDecoded, err := jwt.DecodeOperatorClaims(opJWT)
	require.NoError(t, err)

	account, err := nkeys.CreateAccount()
	require.NoError(t, err)
	accPub, err := account.PublicKey()
	require.NoError(t, err)
	accClaims := jwt.NewAccountClaims(accPub)
	accClaims.Name = "PGJET"
	accJWT, err := accClaims.Encode(operator)
	require.NoError(t, err)

	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(accPub, accJWT))
	url := startNATS(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{opDecoded}, AccountResolver: resolver})

	creds := func(signer nkeys.KeyPair) string {
		user, err := nkeys.CreateUser()
		require.NoError(t, err)
		userPub, err := user.PublicKey()
		require.NoError(t, err)
		uc := jwt.NewUserClaims(userPub)
		uc.Name = "pgjet-writer"
		uc.IssuerAccount = accPub
		userJWT, err := uc.Encode(signer)
		require.NoError(t, err)
		seed, err := user.Seed()
		require.NoError(t, err)
		file, err := jwt.FormatUserConfig(userJWT, seed)
		require.NoError(t, err)
		return writeFile(t, "user.creds", string(file))
	}
	require.NoError(t, connect(t, url, NATSSecurity{CredsFile: creds(account)}))

	// A user signed by an account the operator never issued.
	rogue, err := nkeys.CreateAccount()
	require.NoError(t, err)
	err = connect(t, url, NATSSecurity{CredsFile: creds(rogue)})
	require.ErrorIs(t, err, nats.ErrAuthorization)
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, as
// PEM files in a temp dir.
type testPKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		return k
	}
	serial := int64(1)
	template := func(cn string) *x509.Certificate {
		serial++
		return &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
		}
	}
	caKey := newKey()
	caTmpl := template("pgjet test CA")
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	leaf := func(name, cn string, usage x509.ExtKeyUsage) (string, string) {
		k := newKey()
		tmpl := template(cn)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", kder)
	}
	p := testPKI{CA: write("ca.pem", "CERTIFICATE", caDER)}
	p.ServerCert, p.ServerKey = leaf("server", "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = leaf("client", "pgjet-writer", x509.ExtKeyUsageClientAuth)
	return p
}

func tlsServer(t *testing.T, pki testPKI, verifyClients bool) string {
	t.Helper()
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CaFile: pki.CA, Verify: verifyClients,
	})
	require.NoError(t, err)
	return startNATS(t, &server.Options{TLS: true, TLSConfig: cfg, TLSVerify: verifyClients, TLSTimeout: 2,
		Username: "writer", Password: "s3cret-pw"})
}

func TestNATSTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	url := tlsServer(t, pki, false)
	creds := NATSSecurity{User: "writer", Password: "s3cret-pw"}

	withCA := creds
	withCA.TLSCAFile, withCA.TLSRequired = pki.CA, true
	require.NoError(t, connect(t, url, withCA))

	// Without our CA the system roots do not trust the server.
	err := connect(t, url, creds)
	var unknownCA x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknownCA)

	// TLS is encrypted transport, not authentication: credentials still count.
	wrong := withCA
	wrong.Password = "wrong-pw"
	require.ErrorIs(t, connect(t, url, wrong), nats.ErrAuthorization)

	err = connect(t, url, NATSSecurity{TLSCAFile: filepath.Join(t.TempDir(), "missing.pem")})
	require.ErrorContains(t, err, "-nats-tls-ca")
}

func TestNATSMutualTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	url := tlsServer(t, pki, true)
	sec := NATSSecurity{User: "writer", Password: "s3cret-pw", TLSCAFile: pki.CA}

	withCert := sec
	withCert.TLSCertFile, withCert.TLSKeyFile = pki.ClientCert, pki.ClientKey
	require.NoError(t, connect(t, url, withCert))

	// The server refuses a client without a certificate; the handshake fails.
	require.Error(t, connect(t, url, sec))

	half := sec
	half.TLSCertFile = pki.ClientCert
	require.ErrorContains(t, connect(t, url, half), "-nats-tls-cert and -nats-tls-key go together")
}

func TestNATSTLSRequired(t *testing.T) {
	t.Parallel()
	url := startNATS(t, &server.Options{})
	require.ErrorIs(t, connect(t, url, NATSSecurity{TLSRequired: true}), nats.ErrSecureConnWanted)
	require.NoError(t, connect(t, url, NATSSecurity{}))
}

func TestNATSSecurityValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		sec  NATSSecurity
		want string
	}{
		"user without password": {NATSSecurity{User: "u"}, "-nats-user and -nats-password go together"},
		"password without user": {NATSSecurity{Password: "p"}, "-nats-user and -nats-password go together"},
		"two methods":           {NATSSecurity{Token: "t", CredsFile: "x.creds"}, "give one way to authenticate to NATS, not [-nats-token -nats-creds]"},
		"key without cert":      {NATSSecurity{TLSKeyFile: "k.pem"}, "-nats-tls-cert and -nats-tls-key go together"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.sec.Options()
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Without a NATS URL the embedded server runs without authentication or TLS; settings
// meant for a real server are ignored rather than failing the first run.
func TestNATSSecurityIgnoredForEmbedded(t *testing.T) {
	t.Parallel()
	require.NoError(t, connect(t, "", NATSSecurity{Token: "x", TLSRequired: true}))
}
