# podipc-injector: the admission webhook and IPCChannel controller.
# FROM scratch with the static binary `make images` builds (CGO_ENABLED=0) into the build context.
# The injector talks TLS to the API server with the cluster CA from its service account token
# volume, so it needs no system CA bundle.
FROM scratch
COPY --chown=0:0 podipc-injector /podipc-injector
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/podipc-injector"]
