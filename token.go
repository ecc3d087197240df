package adfrun

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Token cache timings.
const (
	renewBefore  = 5 * time.Minute  // renew a token when less than this remains
	renewPause   = 30 * time.Second // after a failed early renewal, wait this long before the next
	renewTimeout = time.Minute      // bounds an early renewal, which runs on no caller's ctx
)

// Token is a bearer token for Azure Resource Manager.
type Token struct {
	AccessToken string
	ExpiresOn   time.Time
}

// Format prints the token's expiry, never the token itself, whatever the verb.
func (t Token) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "adfrun.Token{AccessToken: [redacted], ExpiresOn: %s}", t.ExpiresOn.Format(time.RFC3339))
}

// fetch is one token request in flight. done is closed once tok, err and
// canceled are set.
type fetch struct {
	done     chan struct{}
	tok      Token
	err      error
	canceled bool // err is the fetching caller's own ctx error
}

// Token returns a bearer token for Resource Manager, from the cache while
// more than 5 minutes of it remain. It is safe for concurrent use.
//
// When less than 5 minutes remain, one goroutine renews the token in the
// background while every caller goes on using the cached one; a failed
// renewal is logged and tried again 30 s later. Without a valid token,
// concurrent callers share one request, each waiting no longer than its
// own ctx allows. Errors are *Error for an answer from Entra ID, or wrap
// the network or ctx error.
func (c *Client) Token(ctx context.Context) (Token, error) {
	for {
		c.mu.Lock()
		tok, now := c.tok, c.now()
		if now.Before(tok.ExpiresOn) {
			if now.After(tok.ExpiresOn.Add(-renewBefore)) && c.fetching == nil && !now.Before(c.nextRenew) {
				go c.renew(c.startFetch())
			}
			c.mu.Unlock()
			return tok, nil
		}
		f, lead := c.fetching, false
		if f == nil {
			f, lead = c.startFetch(), true
		}
		c.mu.Unlock()
		if lead {
			c.runFetch(ctx, f)
		}
		select {
		case <-f.done:
		case <-ctx.Done():
			return Token{}, fmt.Errorf("adfrun: token: %w", ctx.Err())
		}
		if f.err == nil {
			return f.tok, nil
		}
		if !f.canceled || ctx.Err() != nil {
			return Token{}, f.err
		}
		// The caller that fetched gave up; fetch again on this caller's ctx.
	}
}

// startFetch records a new token request in flight; c.mu must be held.
func (c *Client) startFetch() *fetch {
	c.fetching = &fetch{done: make(chan struct{})}
	return c.fetching
}

// runFetch requests a token, caches it and wakes the callers waiting on f.
func (c *Client) runFetch(ctx context.Context, f *fetch) {
	f.tok, f.err = c.fetchToken(ctx)
	f.canceled = ctx.Err() != nil
	c.mu.Lock()
	if f.err == nil {
		c.tok = f.tok
	} else {
		c.nextRenew = c.now().Add(renewPause)
	}
	c.fetching = nil
	c.mu.Unlock()
	close(f.done)
}

// renew runs an early renewal, on no caller's ctx.
func (c *Client) renew(f *fetch) {
	ctx, cancel := context.WithTimeout(context.Background(), renewTimeout)
	defer cancel()
	c.runFetch(ctx, f)
	if f.err != nil {
		c.warn(ctx, "token", "renewal failed, using the cached token until it expires", f.err, renewPause)
	}
}

// dropToken forgets the cached token if it is still the one Resource
// Manager rejected, so the next call fetches a new one.
func (c *Client) dropToken(rejected string) {
	c.mu.Lock()
	if c.tok.AccessToken == rejected {
		c.tok = Token{}
	}
	c.mu.Unlock()
}

// fetchToken requests a token with the client credentials grant.
func (c *Client) fetchToken(ctx context.Context) (Token, error) {
	form := url.Values{
		"grant_type": {"client_credentials"},
		"client_id":  {c.cfg.ClientID},
		"resource":   {c.cfg.Cloud.Resource},
	}
	if c.cfg.ClientSecret != "" {
		form.Set("client_secret", c.cfg.ClientSecret)
	} else {
		assertion, err := c.assertion()
		if err != nil {
			return Token{}, err
		}
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	}
	r := request{op: "token", method: "POST", url: c.tokenURL, body: []byte(form.Encode()), form: true}
	body, err := c.do(ctx, &r)
	if err != nil {
		return Token{}, err
	}
	return parseToken(body, c.now())
}

// parseToken reads a token answer received at now. Entra ID's v1 endpoint
// sends expires_in and expires_on as strings, v2 sends expires_in as a
// number and no expires_on; json.Number takes both forms.
func parseToken(body []byte, now time.Time) (Token, error) {
	var t struct {
		AccessToken string      `json:"access_token"`
		ExpiresIn   json.Number `json:"expires_in"`
		ExpiresOn   json.Number `json:"expires_on"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return Token{}, fmt.Errorf("adfrun: token: answer is not a token: %w", err)
	}
	if t.AccessToken == "" {
		return Token{}, errors.New("adfrun: token: answer has no access_token")
	}
	if on, err := t.ExpiresOn.Int64(); err == nil && on > 0 {
		return Token{t.AccessToken, time.Unix(on, 0)}, nil
	}
	if in, err := t.ExpiresIn.Int64(); err == nil && in > 0 {
		return Token{t.AccessToken, now.Add(time.Duration(in) * time.Second)}, nil
	}
	return Token{}, fmt.Errorf("adfrun: token: answer has no usable expiry (expires_on %q, expires_in %q)", t.ExpiresOn, t.ExpiresIn)
}

// certificate is a parsed Config.ClientCertificate.
type certificate struct {
	key *rsa.PrivateKey
	x5t string // base64url SHA-1 thumbprint of the DER certificate
}

// checkCredential checks that cfg sets exactly one credential and parses
// its certificate, if that is the one.
func checkCredential(cfg Config, now time.Time) (*certificate, error) {
	var set []string
	if cfg.ClientSecret != "" {
		set = append(set, "ClientSecret")
	}
	if cfg.ClientCertificate != nil {
		set = append(set, "ClientCertificate")
	}
	if cfg.FederatedTokenFile != "" {
		set = append(set, "FederatedTokenFile")
	}
	switch {
	case len(set) == 0:
		return nil, errors.New("adfrun: config: ClientSecret is empty (or set ClientCertificate or FederatedTokenFile)")
	case len(set) > 1:
		return nil, fmt.Errorf("adfrun: config: set only one of %s", strings.Join(set, ", "))
	case cfg.ClientCertificate == nil:
		return nil, nil
	}
	return parseCertificate(cfg.ClientCertificate, now)
}

// parseCertificate reads the first certificate and the RSA key in a PEM
// bundle and checks that they belong together and that the certificate has
// not expired. Its errors never quote the PEM.
func parseCertificate(bundle []byte, now time.Time) (*certificate, error) {
	var cert *x509.Certificate
	var key *rsa.PrivateKey
	for {
		var b *pem.Block
		if b, bundle = pem.Decode(bundle); b == nil {
			break
		}
		var err error
		switch {
		case b.Type == "CERTIFICATE" && cert == nil:
			cert, err = x509.ParseCertificate(b.Bytes)
		case b.Type == "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case b.Type == "PRIVATE KEY":
			key, err = parsePKCS8RSA(b.Bytes)
		case b.Type == "ENCRYPTED PRIVATE KEY":
			err = errors.New("the key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem)")
		}
		if err != nil {
			return nil, fmt.Errorf("adfrun: config: ClientCertificate: %s block: %w", b.Type, err)
		}
	}
	switch {
	case cert == nil:
		return nil, errors.New("adfrun: config: ClientCertificate has no CERTIFICATE PEM block")
	case key == nil:
		return nil, errors.New("adfrun: config: ClientCertificate has no RSA private key PEM block")
	case !key.PublicKey.Equal(cert.PublicKey):
		return nil, errors.New("adfrun: config: ClientCertificate: the private key does not belong to the certificate")
	case now.After(cert.NotAfter):
		return nil, fmt.Errorf("adfrun: config: ClientCertificate expired on %s", cert.NotAfter.Format(time.RFC3339))
	}
	sum := sha1.Sum(cert.Raw)
	return &certificate{key: key, x5t: base64.RawURLEncoding.EncodeToString(sum[:])}, nil
}

// oidRSA is the PKCS #8 algorithm of an RSA key (RFC 8017 A.1).
var oidRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// parsePKCS8RSA reads an RSA key in a PKCS #8 PrivateKeyInfo (RFC 5208).
// Unlike x509.ParsePKCS8PrivateKey it links no code for other kinds of
// key, which keeps programs smaller.
func parsePKCS8RSA(der []byte) (*rsa.PrivateKey, error) {
	var info struct {
		Version   int
		Algorithm pkix.AlgorithmIdentifier
		Key       []byte
	}
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		return nil, err
	}
	if !info.Algorithm.Algorithm.Equal(oidRSA) {
		return nil, fmt.Errorf("the key is not RSA (algorithm %v)", info.Algorithm.Algorithm)
	}
	return x509.ParsePKCS1PrivateKey(info.Key)
}

// assertionLifetime is how long a signed client assertion is valid.
const assertionLifetime = 10 * time.Minute

// assertion returns the client_assertion for a token request: the
// federated token read afresh from its file, or a JWT signed with the
// certificate's key.
func (c *Client) assertion() (string, error) {
	if c.cert == nil {
		b, err := os.ReadFile(c.cfg.FederatedTokenFile)
		if err != nil {
			return "", fmt.Errorf("adfrun: token: reading FederatedTokenFile: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("adfrun: token: FederatedTokenFile %s is empty", c.cfg.FederatedTokenFile)
	}
	// RS256 with an x5t thumbprint: the form the v1 token endpoint has long
	// accepted, in every cloud. PS256 with x5t#S256 is newer and documented
	// for the v2 endpoint; RS256 is still accepted there too.
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "x5t": c.cert.x5t})
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("adfrun: token: %w", err)
	}
	now := c.now()
	claims, _ := json.Marshal(map[string]any{
		"aud": c.tokenURL,
		"iss": c.cfg.ClientID,
		"sub": c.cfg.ClientID,
		"jti": hex.EncodeToString(jti[:]),
		"nbf": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, c.cert.key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("adfrun: token: signing the client assertion: %w", err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
