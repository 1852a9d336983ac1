module github.com/example/server

go 1.22.2

require github.com/google/uuid v1.6.0

require (
	github.com/Azure/go-autorest v14.2.0+incompatible
	golang.org/x/sys v0.19.0 // indirect
)

replace github.com/google/uuid => github.com/google/uuid v1.6.0
