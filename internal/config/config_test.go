package config

import (
	"testing"
	"time"
)

func TestFromLookup(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: nil, check: func(t *testing.T, c Config) {
			if c.Worker.RabbitURL != "amqp://guest:guest@127.0.0.1:5672/" || c.Worker.StatusExpires != time.Hour {
				t.Errorf("unexpected defaults: %+v", c.Worker)
			}
		}},
		{name: "overrides", env: map[string]string{"CODEBENCH_POOL_SIZE": "4", "CODEBENCH_ACCEL": "tcg", "CODEBENCH_POOL_WAIT": "5s"},
			check: func(t *testing.T, c Config) {
				if c.Worker.PoolSize != 4 || c.VM.Accel != "tcg" || c.Worker.PoolWait != 5*time.Second {
					t.Errorf("overrides not applied: %+v %+v", c.Worker, c.VM)
				}
			}},
		{name: "bad number", env: map[string]string{"CODEBENCH_POOL_SIZE": "four"}, wantErr: true},
		{name: "bad accel", env: map[string]string{"CODEBENCH_ACCEL": "hvf"}, wantErr: true},
		{name: "long run dir", env: map[string]string{"CODEBENCH_RUN_DIR": "/a/very/long/run/directory/that/leaves/no/room/for/sockets"}, wantErr: true},
		{name: "default above max", env: map[string]string{"CODEBENCH_WALL_MS": "70000"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := fromLookup(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
