package template

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLockFileSerialisesBuilders(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".k.lock")
	unlock, err := lockFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A second builder (flock is per open file, so this is one too) waits...
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v", err)
	}
	// ...and gets it once the first is done.
	got := make(chan error, 1)
	go func() {
		u, err := lockFile(context.Background(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("second builder never got the lock")
	}
}
