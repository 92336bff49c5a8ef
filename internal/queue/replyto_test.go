package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestReplyPolicy(t *testing.T) {
	withPattern, err := NewReplyPolicy(`results\.[a-z0-9-]+`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy ReplyPolicy
		name   string
		ok     bool
		why    string
	}{
		{ReplyPolicy{}, "", true, ""},
		{ReplyPolicy{}, "amq.rabbitmq.reply-to", true, ""},
		{ReplyPolicy{}, "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxOTk3ODA0Mw==.3xFz0aPUr2oRfGNK", true, ""},
		{ReplyPolicy{}, "amq.gen-JzTY20BRgKO-HjmUJj0wLg", true, ""},
		{ReplyPolicy{}, "jobs", false, "codebench's own"},
		{ReplyPolicy{}, "jobs.dead", false, "codebench's own"},
		{ReplyPolicy{}, "job_status_victim", false, "status queue"},
		{ReplyPolicy{}, "amq.direct", false, "reserved"},
		{ReplyPolicy{}, "results.api-1", false, "allowed: amq.rabbitmq.reply-to"},
		{ReplyPolicy{}, "codebench.api.replies", true, ""},
		{ReplyPolicy{}, "codebench.api.", false, "allowed: "},
		{withPattern, "results.api-1", true, ""},
		{withPattern, "results.api-1.x", false, "matching"},
		{withPattern, "xresults.api-1", false, "matching"},
		{withPattern, "jobs", false, "codebench's own"},
		{withPattern, "job_status_results.a", false, "status queue"},
		{ReplyPolicy{}, strings.Repeat("a", 256), false, "longer than 255"},
	} {
		err := tc.policy.Check(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("%q: %v, want ok %v", tc.name, err, tc.ok)
			continue
		}
		if err != nil && (!errors.Is(err, ErrReplyTo) || !strings.Contains(err.Error(), tc.why)) {
			t.Errorf("%q: %v, want ErrReplyTo saying %q", tc.name, err, tc.why)
		}
	}
	if _, err := NewReplyPolicy("("); err == nil {
		t.Error("a bad pattern compiled")
	}
}

func TestFromWorker(t *testing.T) {
	for _, tc := range []struct {
		m      Message
		status string
		why    string
	}{
		{Message{UserID: "worker", AppID: AppID}, "j1", ""},
		{Message{UserID: "", AppID: AppID}, "j1", "user_id"},
		{Message{UserID: "producer", AppID: AppID}, "j1", "user_id"},
		{Message{UserID: "worker", AppID: ""}, "j1", "app_id"},
		{Message{UserID: "worker", AppID: AppID}, "victim", "not of"},
	} {
		err := tc.m.FromWorker("worker", "j1", tc.status)
		if (err == nil) != (tc.why == "") || err != nil && !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%+v %q: %v, want %q", tc.m, tc.status, err, tc.why)
		}
	}
}

// TestCheckFrom: a reply queue of the API's namespace only for a job the
// API's own broker user published; other names as Check says.
func TestCheckFrom(t *testing.T) {
	api := ReplyPolicy{APIUser: "codebench-api"}
	for _, tc := range []struct {
		policy     ReplyPolicy
		name, user string
		ok         bool
	}{
		{api, "codebench.api.replies.n1", "codebench-api", true},
		{api, "codebench.api.replies.n1", "codebench-producer", false},
		{api, "codebench.api.replies.n1", "", false},
		{ReplyPolicy{}, "codebench.api.replies.n1", "codebench-api", false}, // no API user configured: nobody
		{api, "amq.gen-JzTY20BRgKO-HjmUJj0wLg", "codebench-producer", true},
		{api, "jobs", "codebench-api", false},
		{api, "", "anyone", true},
	} {
		err := tc.policy.CheckFrom(tc.name, tc.user)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrReplyTo)) {
			t.Errorf("%q from %q: %v, want ok %v", tc.name, tc.user, err, tc.ok)
		}
	}
}
