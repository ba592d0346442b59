// Package api is p2p's REST API v1: the handlers of the contract in
// ../openapi.yaml, generated into api.gen.go as an oapi-codegen strict
// server on chi and implemented by Server.
package api

//go:generate go tool oapi-codegen -config server.cfg.yaml ../openapi.yaml
