# The README's two commands are `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin

GUEST_IMAGE ?= .cache/guest

.PHONY: all build image demo test clean

all: build

build:
	go build -o bin/vmlet ./cmd/vmlet

image:
	hack/guest-image $(GUEST_IMAGE)

demo:
	hack/demo

test:
	hack/test

clean:
	rm -rf bin .cache/demo
