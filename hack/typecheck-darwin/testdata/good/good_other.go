//go:build !darwin

package good
