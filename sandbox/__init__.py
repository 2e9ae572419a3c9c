"""Local stand-ins for the outside services Colorflow collects from, served on loopback.

No machine here reaches the internet, so the demo and the tests point each source connector at a
stand-in that follows the real service's URLs, parameters, schemas and errors. Each service is a FastAPI
router mounted under its own path prefix by `sandbox.app.create_app`.
"""
