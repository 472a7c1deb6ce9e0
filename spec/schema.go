package spec

import (
	"reflect"
	"strings"
	"sync"
)

// kind is how the decoder reads one node of a manifest.
type kind int

const (
	kindStruct kind = iota
	kindStringMap
	kindList
	kindString
	kindInt
	kindBool
	kindQuantity
	kindDuration
	kindTime
)

// schema describes the fields the decoder accepts, built once from the Go
// types and their JSON names, so the decoder and the JSON decoding that
// follows it agree on every name.
type schema struct {
	kind     kind
	fields   map[string]*schema // kindStruct: by JSON name
	elem     *schema            // kindList
	unsigned bool               // kindInt
	bits     int                // kindInt
}

var (
	schemaOnce    sync.Once
	vmSchema      *schema
	statusSchema  *schema
	quantityType  = reflect.TypeFor[Quantity]()
	durationType  = reflect.TypeFor[Duration]()
	timeType      = reflect.TypeFor[Time]()
	stringMapType = reflect.TypeFor[map[string]string]()
)

func loadSchemas() {
	schemaOnce.Do(func() {
		vmSchema = schemaOf(reflect.TypeFor[VirtualMachine]())
		statusSchema = vmSchema.fields["status"]
		delete(vmSchema.fields, "status")
	})
}

func schemaOf(t reflect.Type) *schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case quantityType:
		return &schema{kind: kindQuantity}
	case durationType:
		return &schema{kind: kindDuration}
	case timeType:
		return &schema{kind: kindTime}
	case stringMapType:
		return &schema{kind: kindStringMap}
	}
	return schemaOfKind(t)
}

func schemaOfKind(t reflect.Type) *schema {
	switch t.Kind() {
	case reflect.Struct:
		return structSchema(t)
	case reflect.Slice:
		return &schema{kind: kindList, elem: schemaOf(t.Elem())}
	case reflect.String:
		return &schema{kind: kindString}
	case reflect.Bool:
		return &schema{kind: kindBool}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return &schema{kind: kindInt, bits: t.Bits()}
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return &schema{kind: kindInt, bits: t.Bits(), unsigned: true}
	}
	panic("spec: no schema for " + t.String())
}

func structSchema(t reflect.Type) *schema {
	s := &schema{kind: kindStruct, fields: map[string]*schema{}}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		s.fields[name] = schemaOf(f.Type)
	}
	return s
}
