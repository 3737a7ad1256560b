"""What a fleet of replicas shares: signed policy bundles and fresh intel."""
