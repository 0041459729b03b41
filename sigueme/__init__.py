"""Sígueme: real-time route monitoring for people at risk, Comisión Estatal de Seguridad Morelos."""

__version__ = "0.1.0"
