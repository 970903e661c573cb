package main

import _ "embed"

// openAPIDocument describes the whole HTTP API; it is served at
// /api/v1/openapi.yaml, and openapi_test.go keeps it and the routes in step.
//
//go:embed openapi.yaml
var openAPIDocument []byte
