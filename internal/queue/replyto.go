package queue

import (
	"fmt"
	"regexp"
	"strings"
)

// Reply queues RabbitMQ names itself: direct reply-to (the broker gives the
// consumer a name under this prefix) and server-named queues.
const (
	DirectReplyTo     = "amq.rabbitmq.reply-to"
	ServerNamedPrefix = "amq.gen-"
	// APIReplyPrefix names the durable reply queues of codebench api
	// nodes: allowed by every worker (statuses wait there while the API is
	// down).
	APIReplyPrefix = "codebench.api."
)

// maxQueueName is AMQP's limit on a queue name (a short string).
const maxQueueName = 255

// ReplyPolicy says which AMQP reply_to a job may name: RabbitMQ's direct
// reply-to, server-named queues (amq.gen-*), and queues matching Pattern;
// never the jobs queue, jobs.dead, any job's status queue or any other
// amq.* name, whatever Pattern says. A status sent there would feed the
// worker its own statuses as jobs, or put one job's verdict in another's
// queue, with the worker's rights.
type ReplyPolicy struct {
	// APIUser is the broker user of codebench api: only a job it published
	// (the user_id RabbitMQ checks) may name a reply queue of the API's
	// namespace (APIReplyPrefix); "": none may.
	APIUser string
	// Pattern, when set, allows more names (anchored: the whole name must
	// match).
	Pattern *regexp.Regexp
}

// NewReplyPolicy compiles pattern (empty: only RabbitMQ's own names).
func NewReplyPolicy(pattern string) (ReplyPolicy, error) {
	if pattern == "" {
		return ReplyPolicy{}, nil
	}
	re, err := regexp.Compile(`^(?:` + pattern + `)$`)
	if err != nil {
		return ReplyPolicy{}, fmt.Errorf("reply_to pattern: %w", err)
	}
	return ReplyPolicy{Pattern: re}, nil
}

// CheckFrom is Check for a job published by userID (its user_id, as the
// broker delivered it): a reply queue of the API's namespace only for the
// API's own user. Any other producer naming one is refused: it could
// otherwise have the workers write, as themselves, a verdict into the
// API's queue for a token it learnt.
func (p ReplyPolicy) CheckFrom(name, userID string) error {
	if IsAPIReply(name) && (p.APIUser == "" || userID != p.APIUser) {
		return fmt.Errorf("%w: %q is the API's reply queue; only the API's broker user may name it (this job's user_id is %q)",
			ErrReplyTo, clip(name), clip(userID))
	}
	return p.Check(name)
}

// IsAPIReply says whether name is a reply queue of the API's namespace:
// its statuses go there alone (no status queue is made for such a job).
func IsAPIReply(name string) bool {
	return strings.HasPrefix(name, APIReplyPrefix) && len(name) > len(APIReplyPrefix)
}

// Check returns nil when statuses may go to name ("" is no reply_to), else
// an error matching ErrReplyTo that says why.
func (p ReplyPolicy) Check(name string) error {
	refuse := func(why string) error {
		return fmt.Errorf("%w: %q %s", ErrReplyTo, clip(name), why)
	}
	switch {
	case name == "":
		return nil
	case len(name) > maxQueueName:
		return refuse(fmt.Sprintf("is longer than %d bytes", maxQueueName))
	case name == JobsQueue || name == DeadQueue:
		return refuse("is codebench's own queue")
	case strings.HasPrefix(name, StatusPrefix):
		return refuse("is a job's status queue")
	case name == DirectReplyTo || strings.HasPrefix(name, DirectReplyTo+"."):
		return nil
	case strings.HasPrefix(name, ServerNamedPrefix), strings.HasPrefix(name, APIReplyPrefix) && len(name) > len(APIReplyPrefix):
		return nil
	case strings.HasPrefix(name, "amq."):
		return refuse("is a name reserved to the broker")
	case p.Pattern != nil && p.Pattern.MatchString(name):
		return nil
	}
	allowed := DirectReplyTo + ", " + ServerNamedPrefix + "*, " + APIReplyPrefix + "*"
	if p.Pattern != nil {
		allowed += " or a name matching " + p.Pattern.String()
	}
	return refuse("is not a reply queue this worker sends to (allowed: " + allowed + ")")
}

// clip shortens a producer's text for a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
