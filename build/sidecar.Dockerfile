# podipc-sidecar: the per-pod daemon that owns the channels.
# FROM scratch: no shell, no libc, no package manager; only the static binary that `make images`
# builds (CGO_ENABLED=0) into the build context. Nothing is pulled, so it builds offline.
FROM scratch
COPY --chown=0:0 podipc-sidecar /podipc-sidecar
# The injector also sets runAsNonRoot/runAsUser; the image itself never runs as root either.
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/podipc-sidecar"]
