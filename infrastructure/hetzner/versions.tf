# Hetzner Cloud: one server with the deploy user made by cloud-init, a cloud firewall,
# an optional data volume. The token comes from HCLOUD_TOKEN in the environment only.
terraform {
  required_version = ">= 1.6"
  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.49"
    }
  }
  # The state path is given per environment at init (-backend-config=path=...).
  backend "local" {}
}

provider "hcloud" {}
