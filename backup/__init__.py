"""cloudant-cos-backup: back up Cloudant/CouchDB databases into IBM Cloud Object Storage, and restore them."""

__version__ = "0.1.0"
