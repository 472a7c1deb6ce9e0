package main
import (
 _ "sigs.k8s.io/yaml"
 _ "go.yaml.in/yaml/v3"
 _ "github.com/fsnotify/fsnotify"
 _ "k8s.io/client-go/util/workqueue"
 _ "github.com/go-logr/logr"
 _ "github.com/spf13/cobra"
 _ "github.com/mdlayher/vsock"
 _ "k8s.io/apimachinery/pkg/api/resource"
)
func main(){}
