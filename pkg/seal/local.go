package seal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"aitokens/pkg/token"
)

// LocalAlgorithm names the local scheme: AES-256-GCM data key wrapped by AES-256-GCM master key.
const LocalAlgorithm = "local-aes256gcm-v1"

// Local is the development sealer: the master key lives in a file (mode 0600).
type Local struct {
	master []byte
	keyID  string
}

// NewLocal reads the master key from path, creating a random one (mode 0600) on first use.
func NewLocal(path string) (*Local, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) { // another process made it first: use theirs
			return NewLocal(path)
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: master key %s must be 32 bytes, has %d", path, len(key))
	}
	return NewLocalFromKey(key), nil
}

// NewLocalFromKey uses a 32-byte master key held in memory (tests).
func NewLocalFromKey(key []byte) *Local {
	sum := sha256.Sum256(key)
	return &Local{master: key, keyID: "local:" + hex.EncodeToString(sum[:8])}
}

func (l *Local) Seal(_ context.Context, b Binding, value []byte) (token.Sealed, error) {
	dataKey := make([]byte, 32)
	if _, err := rand.Read(dataKey); err != nil {
		return token.Sealed{}, err
	}
	defer Wipe(dataKey)
	wrapNonce, wrapped, err := EncryptValue(l.master, b, dataKey)
	if err != nil {
		return token.Sealed{}, err
	}
	nonce, ciphertext, err := EncryptValue(dataKey, b, value)
	if err != nil {
		return token.Sealed{}, err
	}
	return token.Sealed{
		KeyID:      l.keyID,
		Algorithm:  LocalAlgorithm,
		WrappedKey: append(wrapNonce, wrapped...),
		Nonce:      nonce,
		Ciphertext: ciphertext,
	}, nil
}

func (l *Local) Open(_ context.Context, b Binding, s token.Sealed) ([]byte, error) {
	if s.Algorithm != LocalAlgorithm || s.KeyID != l.keyID {
		return nil, fmt.Errorf("seal: value was sealed by %s with key %s, not by this local sealer", s.Algorithm, s.KeyID)
	}
	if len(s.WrappedKey) < 12 {
		return nil, fmt.Errorf("seal: wrapped key too short")
	}
	dataKey, err := DecryptValue(l.master, b, s.WrappedKey[:12], s.WrappedKey[12:])
	if err != nil {
		return nil, err
	}
	defer Wipe(dataKey)
	return DecryptValue(dataKey, b, s.Nonce, s.Ciphertext)
}
