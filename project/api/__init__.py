# The root of the API's URLs (project/urls.py), without the leading slash.
API_ROOT = "rest-api/enterprise-interface/v1.0/"
