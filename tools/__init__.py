"""Local-stack tooling: start RabbitMQ, MongoDB and the services on this machine (make run, the tests)."""
