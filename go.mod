module github.com/codebench/codebench

go 1.26.8

require (
	github.com/rabbitmq/amqp091-go v1.16.0
	golang.org/x/sys v0.50.0
)
