package adfrun

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two RSA keys, made once: key generation is slow under -race.
var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var keys [2]*rsa.PrivateKey
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

// selfSigned returns a DER certificate for pub, signed by key, valid until notAfter.
func selfSigned(t testing.TB, pub crypto.PublicKey, key crypto.Signer, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "adfrun-test"},
		NotBefore: notAfter.Add(-2 * 365 * 24 * time.Hour), NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}

// certPEM is a valid certificate with its PKCS #8 key.
func certPEM(t testing.TB) (bundle, der []byte) {
	key := testKeys()[0]
	der = selfSigned(t, &key.PublicKey, key, time.Now().Add(365*24*time.Hour))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	return append(pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", pkcs8)...), der
}

// checkAssertion verifies a client assertion as Entra ID does and returns its claims.
func checkAssertion(t testing.TB, jwt string, der []byte) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("assertion has %d parts", len(parts))
	}
	cert, _ := x509.ParseCertificate(der)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(cert.PublicKey.(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("signature does not verify with the certificate: %v", err)
	}
	var header map[string]string
	var claims map[string]any
	for i, dst := range []any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, dst) != nil {
			t.Fatalf("part %d is not base64url JSON: %q", i, parts[i])
		}
	}
	thumb := sha1.Sum(der)
	if want := map[string]string{"alg": "RS256", "typ": "JWT", "x5t": base64.RawURLEncoding.EncodeToString(thumb[:])}; fmt.Sprint(header) != fmt.Sprint(want) {
		t.Errorf("header = %v, want %v", header, want)
	}
	return claims
}

func TestCertificateCredential(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	bundle, der := certPEM(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ClientSecret, cfg.ClientCertificate = "", bundle })
	clk := withClock(c, f)
	jtis := map[any]bool{}
	for i := 0; i < 2; i++ {
		if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
			t.Fatal(err)
		}
		form := f.lastSeen("token")
		vals := parseForm(t, form.body)
		if vals["client_secret"] != "" || vals["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			t.Fatalf("token form = %v", vals)
		}
		claims := checkAssertion(t, vals["client_assertion"], der)
		now := float64(clk.Now().Unix())
		if claims["aud"] != f.URL+"/"+testTenant+"/oauth2/token" || claims["iss"] != testClientID || claims["sub"] != testClientID ||
			claims["nbf"] != now || claims["exp"] != now+600 || claims["jti"] == "" || jtis[claims["jti"]] {
			t.Errorf("claims = %v", claims)
		}
		jtis[claims["jti"]] = true
		c.dropToken(tokenPrefix + fmt.Sprint(i+1))
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		s := fmt.Sprintf(verb, c) + fmt.Sprintf(verb, testConfig(f))
		if strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, pemBody(bundle)) {
			t.Errorf("%s prints the certificate's key: %s", verb, s)
		}
	}
}

// pemBody returns a piece of the key block of a PEM bundle.
func pemBody(bundle []byte) string {
	_, key, _ := strings.Cut(string(bundle), "PRIVATE KEY-----\n")
	return key[:40]
}

// parseForm reads a form body, one value per key.
func parseForm(t testing.TB, body []byte) map[string]string {
	t.Helper()
	form, err := url.ParseQuery(string(body))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	for k := range form {
		vals[k] = form.Get(k)
	}
	return vals
}

func TestCertificateFormsAndRejections(t *testing.T) {
	t.Parallel()
	key, other := testKeys()[0], testKeys()[1]
	year := time.Now().Add(365 * 24 * time.Hour)
	der := selfSigned(t, &key.PublicKey, key, year)
	cert := pemBlock("CERTIFICATE", der)
	pkcs1 := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	cat := func(b ...[]byte) []byte { return []byte(string(b[0]) + string(b[1])) }
	for _, tc := range []struct {
		name   string
		bundle []byte
		want   string // in the error; "" for none
	}{
		{"PKCS #8", cat(cert, pemBlock("PRIVATE KEY", pkcs8)), ""},
		{"PKCS #1, key first", cat(pkcs1, cert), ""},
		{"chain: the first certificate is the client's", cat(cat(cert, pkcs1), pemBlock("CERTIFICATE", selfSigned(t, &other.PublicKey, other, year))), ""},
		{"not PEM", []byte("MIIC...not pem"), "no CERTIFICATE"},
		{"certificate only", cert, "no RSA private key"},
		{"key only", pkcs1, "no CERTIFICATE"},
		{"key of another certificate", cat(cert, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(other))), "does not belong"},
		{"expired", cat(pemBlock("CERTIFICATE", selfSigned(t, &key.PublicKey, key, time.Now().Add(-time.Hour))), pkcs1), "expired"},
		{"EC key", cat(cert, pemBlock("PRIVATE KEY", ecDER)), "not RSA"},
		{"encrypted key", cat(cert, pemBlock("ENCRYPTED PRIVATE KEY", pkcs8)), "encrypted"},
		{"broken key", cat(cert, pemBlock("RSA PRIVATE KEY", pkcs8[:100])), "RSA PRIVATE KEY"},
		{"broken certificate", cat(pemBlock("CERTIFICATE", der[:200]), pkcs1), "CERTIFICATE"},
	} {
		f := newFake(t)
		cfg := testConfig(f)
		cfg.ClientSecret, cfg.ClientCertificate = "", tc.bundle
		_, err := New(cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ClientCertificate")):
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		case err != nil && (strings.Contains(err.Error(), pemBody(pkcs1)) || strings.Contains(err.Error(), "MII")):
			t.Errorf("%s: error quotes the PEM: %v", tc.name, err)
		}
	}
}

func TestExactlyOneCredential(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	bundle, _ := certPEM(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"none", func(c *Config) { c.ClientSecret = "" }, []string{"ClientSecret", "ClientCertificate", "FederatedTokenFile"}},
		{"secret and certificate", func(c *Config) { c.ClientCertificate = bundle }, []string{"ClientSecret", "ClientCertificate"}},
		{"certificate and file", func(c *Config) { c.ClientSecret, c.ClientCertificate, c.FederatedTokenFile = "", bundle, "/t" }, []string{"ClientCertificate", "FederatedTokenFile"}},
	} {
		cfg := testConfig(f)
		tc.edit(&cfg)
		_, err := New(cfg)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, w)
			}
		}
		if err != nil {
			mustNotContainSecrets(t, tc.name, err.Error())
		}
	}
}

func TestFederatedTokenIsReadForEveryRequest(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("eyJhbGciOiJSUzI1NiJ9.first.sig\n"), 0o600)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ClientSecret, cfg.FederatedTokenFile = "", file })
	for i, want := range []string{"eyJhbGciOiJSUzI1NiJ9.first.sig", "eyJhbGciOiJSUzI1NiJ9.second.sig"} {
		if i == 1 {
			os.WriteFile(file, []byte(want), 0o600) // the kubelet rotated it
			c.dropToken(tokenPrefix + "1")
		}
		if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
			t.Fatal(err)
		}
		vals := parseForm(t, f.lastSeen("token").body)
		if vals["client_assertion"] != want || vals["client_assertion_type"] != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || vals["client_secret"] != "" {
			t.Errorf("token request %d: form = %v, want assertion %q", i+1, vals, want)
		}
	}
	for name, content := range map[string]*string{"empty": new(string), "missing": nil} {
		if content == nil {
			os.Remove(file)
		} else {
			os.WriteFile(file, []byte(" \n"), 0o600)
		}
		c.dropToken(tokenPrefix + "2")
		before := f.count("token")
		_, err := c.CreateRun(context.Background(), "p", nil)
		if err == nil || !strings.Contains(err.Error(), "FederatedTokenFile") || f.count("token") != before {
			t.Errorf("%s file: err = %v, want one naming FederatedTokenFile and no request", name, err)
		}
	}
}

func TestNewFromEnvCredentials(t *testing.T) {
	dir := t.TempDir()
	bundle, _ := certPEM(t)
	certFile, tokenFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "token")
	os.WriteFile(certFile, bundle, 0o600)
	os.WriteFile(tokenFile, []byte("assertion"), 0o600)
	for k, v := range map[string]string{
		"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClientID, "AZURE_SUBSCRIPTION_ID": testSub,
		"AZURE_RESOURCE_GROUP": testGroup, "AZURE_DATA_FACTORY": testFactory,
	} {
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		secret, cert, file string
		want               string // in the error; "" for none
	}{
		{"", certFile, "", ""},
		{"", "", tokenFile, ""},
		{"", filepath.Join(dir, "missing.pem"), "", "AZURE_CLIENT_CERTIFICATE_PATH"},
		{"", "", "", "AZURE_CLIENT_SECRET"},
		{testSecret, "", tokenFile, "AZURE_FEDERATED_TOKEN_FILE"},
		{"", certFile, tokenFile, "AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE"},
	} {
		t.Setenv("AZURE_CLIENT_SECRET", tc.secret)
		t.Setenv("AZURE_CLIENT_CERTIFICATE_PATH", tc.cert)
		t.Setenv("AZURE_FEDERATED_TOKEN_FILE", tc.file)
		c, err := NewFromEnv()
		switch {
		case tc.want == "" && (err != nil || (c.cert == nil) == (tc.cert != "")):
			t.Errorf("%+v: %v, %v", tc, c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: err = %v, want one naming %s", tc, err, tc.want)
		}
	}
}
