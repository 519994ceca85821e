# Local KVM through libvirt: an Ubuntu 24.04 cloud image, a cloud-init disk, an optional
# data disk. For trying the whole flow on a workstation with KVM.
terraform {
  required_version = ">= 1.6"
  required_providers {
    libvirt = {
      source  = "dmacvicar/libvirt"
      version = "~> 0.7.6"
    }
  }
  # The state path is given per environment at init (-backend-config=path=...).
  backend "local" {}
}

provider "libvirt" {
  uri = var.libvirt_uri
}
